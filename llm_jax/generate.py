"""Text generation: one jitted decoding loop over a family's caches — greedy, sampling, beam search.

    decoder = decoder_for(family, cfg)          # the family's decoder steps (models/family.py, "Decoder steps")
    out = generate(decoder, params, [[464, 3290], [818]], GenerationConfig(max_new_tokens=20, num_beams=4))
    out.sequences()                             # each row's generated ids, up to and including its stop token

The loop knows a family only through its decoder steps: the prefill (`init_decode_state`: the prompt into the KV
cache — or, for an encoder-decoder, the encoder pass and the decoder's start token — returning the first new
token's logits), one step (`decode_step`: one token per row in, the next logits out), the rows of a state
(`reorder_decode_state`, for beam search) and the ids that end a text (`stop_token_ids`). Prompts of different
lengths are left-padded, so every row's last prompt token sits in the same column; each family gives its padded
rows their own positions (a GPT counts from a row's first real token, as Hugging Face's `generate` does). The
whole search — prefill, then a `lax.while_loop` that stops once every row has ended or after `max_new_tokens` —
is one compiled function per decoder, batch shape, `max_new_tokens`, stop ids and strategy (greedy; sampling with
or without each filter; the beam count); temperature, k, p, length penalty and early stopping are its arguments.

What the strategies do (the semantics of Hugging Face `generate`, transformers 5, so that outputs compare token
for token):
* **greedy**: the most likely token (the first on ties). A row that produced a stop token has ended: from then on
  it is fed and filled with `pad_token_id`.
* **sampling** (`do_sample`): the logits divided by `temperature`, then top-k (the k most likely tokens; ties
  with the k-th stay), then top-p / nucleus (Holtzman et al. 2020: the most likely tokens whose probabilities,
  summed before each, stay below p — the smallest set whose mass reaches p), then one draw. The order of HF's
  warpers (temperature → top-k → top-p); here top-k defaults to 0, off (HF's default is 50).
* **beam search** (`num_beams` = N > 1). Each hypothesis's score is the sum of its tokens' log-probabilities.
  Every step extends the N live beams by every token and keeps the K = max(2, 1 + #stop ids) · N best
  extensions (so that N of them continue even when the best ones end). An extension ends if its token is a stop
  token or it reaches `max_new_tokens`; one that ends *among the best N* becomes a finished hypothesis scored
  `sum_logprobs / generated_length ** length_penalty`, competing for the N finished slots; the N best that do not
  end are the next live beams. Initially only beam 0 is live (the others start at −1e9, so the first step does
  not pick the same token N times). A prompt's search closes when its best live beam cannot beat its worst
  finished hypothesis: with `early_stopping` False (HF's default) judged by the live score over the current
  length ** length_penalty (a heuristic); with "never", for a positive penalty, over `max_new_tokens` **
  length_penalty (the best the beam could still reach); with True, as soon as N hypotheses have finished. The
  loop ends when every prompt is closed or every extension ended; each prompt returns its best finished
  hypothesis. The masking constant −1e9 is HF's (a finite "minus infinity", so sums stay ordered).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from llm_jax import models
from llm_jax.models.family import DECODING_MEMBERS

EARLY_STOPPING = (False, True, "never")
# Hugging Face's finite "minus infinity" of beam scores: a masked score plus a log-probability stays ordered.
NEG = -1.0e9


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """How to generate (Hugging Face `GenerationConfig` names).

    Attributes:
      max_new_tokens: tokens generated per row at most (a stop token included).
      do_sample: draw each token (with `temperature`, `top_k`, `top_p`) instead of taking the most likely.
      temperature: > 0; the logits are divided by it before sampling.
      top_k: sample among the k most likely tokens; 0 = all.
      top_p: in (0, 1]; sample among the smallest set of most likely tokens whose probability reaches p; 1 = all.
      num_beams: N > 1 = beam search (deterministic; not combined with `do_sample`).
      length_penalty: beam search scores a finished hypothesis by sum_logprobs / length ** length_penalty
        (> 0 favours longer ones).
      early_stopping: False, True or "never" (see the module docstring).
      stop_token_ids: ids that end a row; None = the model's own (`Decoder.stop_token_ids`: its end-of-text
        token), () = none (every row runs to `max_new_tokens`).
      pad_token_id: fills a row after it ended, and pads prompts on the left; None = the first stop id, or 0
        (HF uses the end-of-text id for GPT-2, which has no padding token).
    """

    max_new_tokens: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    stop_token_ids: tuple[int, ...] | None = None
    pad_token_id: int | None = None

    @property
    def stops(self) -> tuple[int, ...]:
        return tuple(self.stop_token_ids or ())

    @property
    def pad_id(self) -> int:
        if self.pad_token_id is not None:
            return self.pad_token_id
        return self.stops[0] if self.stops else 0

    def validate(self, vocab_size: int | None = None) -> GenerationConfig:
        """Checks the settings (and the ids against `vocab_size`); returns self.

        Raises:
          ValueError: a setting out of its range, sampling combined with beams, or an id outside the vocabulary.
        """
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must be ≥ 1.")
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature} must be > 0 (greedy decoding is do_sample=False).")
        if self.top_k < 0:
            raise ValueError(f"top_k={self.top_k} must be ≥ 0 (0 = no top-k filter).")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1] (1 = no nucleus filter).")
        if self.num_beams < 1:
            raise ValueError(f"num_beams={self.num_beams} must be ≥ 1 (1 = greedy or sampling).")
        if self.num_beams > 1 and self.do_sample:
            raise ValueError(f"num_beams={self.num_beams} with do_sample: beam search here is deterministic; use "
                             "either beams or sampling.")
        if not (isinstance(self.early_stopping, bool) or self.early_stopping == "never"):
            raise ValueError(f"early_stopping={self.early_stopping!r}: choose False, True or 'never'.")
        if vocab_size is not None:
            bad = [i for i in (*self.stops, self.pad_id) if not 0 <= i < vocab_size]
            if bad:
                raise ValueError(f"stop/pad token ids {bad} are outside the vocabulary [0, {vocab_size}).")
        return self


@dataclasses.dataclass(frozen=True)
class Decoder:
    """A family's decoder steps bound to its Config (hashable: a static argument of the jitted loop).

    Attributes:
      cfg: the model's Config.
      init_state / step / reorder: the family's `init_decode_state`, `decode_step`, `reorder_decode_state`.
      stop_token_ids: the family's `stop_token_ids(cfg)`.
    """

    cfg: Any
    init_state: Callable
    step: Callable
    reorder: Callable
    stop_token_ids: tuple[int, ...] = ()


def decoder_for(family: str, cfg) -> Decoder:
    """The decoder steps of a registered family.

    Raises:
      ValueError: the family has none (an encoder such as BERT generates no text).
    """
    module = models.family_module(family)
    missing = [name for name in DECODING_MEMBERS if not hasattr(module, name)]
    if missing:
        raise ValueError(f"The {family} family has no decoder steps ({module.LM_KIND} LM; it lacks {missing}): "
                         "generation needs a causal or sequence-to-sequence model.")
    return Decoder(cfg.validate(), module.init_decode_state, module.decode_step, module.reorder_decode_state,
                   tuple(int(i) for i in module.stop_token_ids(cfg)))


@dataclasses.dataclass(frozen=True)
class GenerateOutput:
    """What `generate` returns (numpy).

    Attributes:
      tokens_BN: `[B, max_new_tokens]` generated ids; `pad_token_id` after each row's end.
      lengths_B: `[B]` generated tokens per row, its stop token included.
      scores_B: beam search: the returned hypothesis's score (sum_logprobs / length ** length_penalty); else None.
    """

    tokens_BN: np.ndarray
    lengths_B: np.ndarray
    scores_B: np.ndarray | None = None

    def sequences(self) -> list[list[int]]:
        """Each row's generated ids, up to and including its stop token."""
        return [row[:n].tolist() for row, n in zip(self.tokens_BN, self.lengths_B)]


# --------------------------------------------------------------------------------------------- sampling


def warp_logits(logits_BV: jax.Array, temperature, top_k, top_p, *, use_top_k: bool = True,
                use_top_p: bool = True) -> jax.Array:
    """Temperature, then top-k, then top-p (HF's order of warpers): float32 logits with the filtered tokens at −inf.

    Args:
      logits_BV: `[B, V]` logits.
      temperature: > 0, divides the logits.
      top_k: keep the k largest logits of a row (ties with the k-th stay); 0 = all. May be traced.
      top_p: keep the most likely tokens whose probabilities summed before each (after top-k) are below p — the
        smallest set with mass ≥ p, at least one token, ties with the last one kept (Holtzman et al. 2020 §3.1);
        1 = all. May be traced.
      use_top_k / use_top_p: static switches; off skips the filter (and the sort the filters share).
    """
    logits_BV = logits_BV.astype(jnp.float32) / temperature
    if not (use_top_k or use_top_p):
        return logits_BV
    sorted_BV = -jnp.sort(-logits_BV, axis=-1)  # descending
    v = logits_BV.shape[-1]
    if use_top_k:
        kth_B1 = jnp.take_along_axis(sorted_BV, jnp.full((sorted_BV.shape[0], 1), jnp.clip(top_k - 1, 0, v - 1)), -1)
        kth_B1 = jnp.where(top_k > 0, kth_B1, -jnp.inf)
        logits_BV = jnp.where(logits_BV < kth_B1, -jnp.inf, logits_BV)
        sorted_BV = jnp.where(sorted_BV < kth_B1, -jnp.inf, sorted_BV)  # still descending
    if use_top_p:
        probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
        before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV  # the mass of the more likely tokens
        kept_B1 = jnp.maximum(jnp.sum(before_BV < top_p, axis=-1, keepdims=True), 1)
        threshold_B1 = jnp.take_along_axis(sorted_BV, kept_B1 - 1, axis=-1)
        logits_BV = jnp.where((top_p < 1.0) & (logits_BV < threshold_B1), -jnp.inf, logits_BV)
    return logits_BV


def top_k_filter(logits_BV: jax.Array, k) -> jax.Array:
    """`warp_logits` with top-k only (temperature 1)."""
    return warp_logits(logits_BV, 1.0, k, 1.0, use_top_p=False)


def top_p_filter(logits_BV: jax.Array, p) -> jax.Array:
    """`warp_logits` with top-p only (temperature 1)."""
    return warp_logits(logits_BV, 1.0, 0, p, use_top_k=False)


def _is_stop(tokens: jax.Array, stop_token_ids: tuple[int, ...]) -> jax.Array:
    if not stop_token_ids:
        return jnp.zeros(tokens.shape, bool)
    return jnp.isin(tokens, jnp.asarray(stop_token_ids, jnp.int32))


# -------------------------------------------------------------------------------------------- the loops


@dataclasses.dataclass(frozen=True)
class _Plan:
    """The settings that shape the compiled search (static); the others travel as arrays (`_knobs`), so that one
    compilation serves every temperature, k, p, length penalty and early-stopping mode."""

    max_new_tokens: int
    do_sample: bool
    use_top_k: bool
    use_top_p: bool
    num_beams: int
    stops: tuple[int, ...]
    pad: int

    @classmethod
    def of(cls, config: GenerationConfig) -> _Plan:
        return cls(config.max_new_tokens, config.do_sample, config.do_sample and config.top_k > 0,
                   config.do_sample and config.top_p < 1.0, config.num_beams, config.stops, config.pad_id)


def _knobs(config: GenerationConfig) -> dict[str, np.ndarray]:
    m, lp = config.max_new_tokens, config.length_penalty
    return {
        "temperature": np.float32(config.temperature), "top_k": np.int32(config.top_k),
        "top_p": np.float32(config.top_p),
        # length ** length_penalty for lengths 1 … M, in float64 then float32 (as HF's Python scalar).
        "length_norm_M": (np.arange(1, m + 1, dtype=np.float64) ** lp).astype(np.float32),
        "stop_when_full": np.bool_(config.early_stopping is True),
        "judge_at_max": np.bool_(config.early_stopping == "never" and lp > 0),
    }


def _sample(decoder: Decoder, plan: _Plan, knobs, params, tokens_BT, mask_BT, key):
    """Greedy or sampled decoding: prefill, then one token per step until every row ended or `max_new_tokens`."""
    n, pad, stops = plan.max_new_tokens, plan.pad, plan.stops
    b = tokens_BT.shape[0]

    def choose(logits_BV, i):
        if not plan.do_sample:
            return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
        warped_BV = warp_logits(logits_BV, knobs["temperature"], knobs["top_k"], knobs["top_p"],
                                use_top_k=plan.use_top_k, use_top_p=plan.use_top_p)
        return jax.random.categorical(jax.random.fold_in(key, i), warped_BV, axis=-1).astype(jnp.int32)

    state, logits_BV = decoder.init_state(decoder.cfg, params, tokens_BT, mask_BT, n)
    tok_B = choose(logits_BV, 0)
    out_BN = jnp.full((b, n), pad, jnp.int32).at[:, 0].set(tok_B)
    ended_B = _is_stop(tok_B, stops)

    def cond(carry):
        i, _, _, ended_B, _ = carry
        return (i < n) & ~jnp.all(ended_B)

    def body(carry):
        i, state, tok_B, ended_B, out_BN = carry
        state, logits_BV = decoder.step(decoder.cfg, params, state, tok_B)
        tok_B = jnp.where(ended_B, pad, choose(logits_BV, i))
        out_BN = jax.lax.dynamic_update_slice(out_BN, tok_B[:, None], (0, i))
        return i + 1, state, tok_B, ended_B | _is_stop(tok_B, stops), out_BN

    steps, _, _, _, out_BN = jax.lax.while_loop(cond, body, (jnp.int32(1), state, tok_B, ended_B, out_BN))
    is_stop_BN = _is_stop(out_BN, stops) & (jnp.arange(n) < steps)
    lengths_B = jnp.where(jnp.any(is_stop_BN, axis=1), jnp.argmax(is_stop_BN, axis=1) + 1, steps)
    return out_BN, lengths_B.astype(jnp.int32), None


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class _Beams:
    """Beam-search bookkeeping per prompt (B) and beam (N); tokens are the generated ones (M = max_new_tokens)."""

    live_tok_BNM: jax.Array
    live_score_BN: jax.Array
    done_tok_BNM: jax.Array
    done_score_BN: jax.Array
    done_len_BN: jax.Array
    done_BN: jax.Array  # a finished hypothesis holds the slot (not a −1e9 placeholder)
    open_B1: jax.Array  # the prompt's search may still improve (HF's early-stop heuristic unsatisfied)


def _take(x_BK, index_BN):
    """Rows of `x_BK…` picked per prompt: `x[b, index[b, n], …]`."""
    return jnp.take_along_axis(x_BK, index_BN.reshape(index_BN.shape + (1,) * (x_BK.ndim - 2)), axis=1)


def _beam_step(plan: _Plan, knobs, beams: _Beams, logits_RV, i):
    """One beam-search step on the live beams' logits `[B·N, V]` at generated position i; returns the new beams,
    the parent row of each new live beam (`[B·N]`, into the current rows), the tokens to feed, and whether any
    search continues (see the module docstring)."""
    b, n, m = beams.live_tok_BNM.shape
    v = logits_RV.shape[-1]
    k = max(2, 1 + len(plan.stops)) * n
    norm_M = knobs["length_norm_M"]
    logp_BNV = jax.nn.log_softmax(logits_RV.astype(jnp.float32), axis=-1).reshape(b, n, v)
    total_BX = (logp_BNV + beams.live_score_BN[:, :, None]).reshape(b, n * v)
    score_BK, index_BK = jax.lax.top_k(total_BX, k)
    parent_BK, tok_BK = index_BK // v, (index_BK % v).astype(jnp.int32)
    seq_BKM = _take(beams.live_tok_BNM, parent_BK)
    seq_BKM = jax.lax.dynamic_update_slice(seq_BKM, tok_BK[:, :, None], (0, 0, i))
    ends_BK = _is_stop(tok_BK, plan.stops) | (i + 1 >= m)

    # The best N extensions that go on are the next live beams.
    live_BK = score_BK + ends_BK.astype(jnp.float32) * NEG
    keep_BN = jax.lax.top_k(live_BK, n)[1]
    live_tok_BNM, live_score_BN, parent_BN = _take(seq_BKM, keep_BN), _take(live_BK, keep_BN), _take(parent_BK, keep_BN)

    # Those among the best N that end compete for the N finished slots, scored with the length penalty.
    ended_BK = ends_BK & (jnp.arange(k) < n)[None, :]
    full_B1 = jnp.all(beams.done_BN, axis=1, keepdims=True) & knobs["stop_when_full"]
    cand_BK = score_BK / norm_M[i]
    cand_BK = cand_BK + full_B1.astype(jnp.float32) * NEG
    cand_BK = cand_BK + (~beams.open_B1).astype(jnp.float32) * NEG
    cand_BK = cand_BK + (~ended_BK).astype(jnp.float32) * NEG
    merged_score = jnp.concatenate([beams.done_score_BN, cand_BK], axis=1)
    best_BN = jax.lax.top_k(merged_score, n)[1]
    done_tok_BNM = _take(jnp.concatenate([beams.done_tok_BNM, seq_BKM], axis=1), best_BN)
    done_score_BN = _take(merged_score, best_BN)
    done_len_BN = _take(jnp.concatenate([beams.done_len_BN, jnp.full((b, k), i + 1, jnp.int32)], axis=1), best_BN)
    done_BN = _take(jnp.concatenate([beams.done_BN, ended_BK], axis=1), best_BN)

    # Can the best live beam still beat the worst finished hypothesis?
    best_live_B1 = live_score_BN[:, :1] / jnp.where(knobs["judge_at_max"], norm_M[m - 1], norm_M[i])
    worst_done_BN = jnp.where(done_BN, jnp.min(done_score_BN, axis=1, keepdims=True), NEG)
    open_B1 = beams.open_B1 & jnp.any(best_live_B1 > worst_done_BN, axis=-1, keepdims=True)
    go = jnp.any(open_B1) & ~jnp.all(ends_BK) & ~(jnp.all(done_BN) & knobs["stop_when_full"])
    rows_R = (parent_BN + n * jnp.arange(b)[:, None]).reshape(-1)
    next_R = jax.lax.dynamic_slice_in_dim(live_tok_BNM, i, 1, axis=2).reshape(-1)
    beams = _Beams(live_tok_BNM, live_score_BN, done_tok_BNM, done_score_BN, done_len_BN, done_BN, open_B1)
    return beams, rows_R, next_R, go


def _beam_search(decoder: Decoder, plan: _Plan, knobs, params, tokens_BT, mask_BT):
    b, n, m, pad = tokens_BT.shape[0], plan.num_beams, plan.max_new_tokens, plan.pad
    state, logits_BV = decoder.init_state(decoder.cfg, params, tokens_BT, mask_BT, m)
    rows_R = jnp.repeat(jnp.arange(b), n)  # one row per beam
    state, logits_RV = decoder.reorder(state, rows_R), logits_BV[rows_R]
    beams = _Beams(
        live_tok_BNM=jnp.full((b, n, m), pad, jnp.int32),
        live_score_BN=jnp.zeros((b, n), jnp.float32).at[:, 1:].set(NEG),
        done_tok_BNM=jnp.full((b, n, m), pad, jnp.int32),
        done_score_BN=jnp.full((b, n), NEG, jnp.float32),
        done_len_BN=jnp.zeros((b, n), jnp.int32),
        done_BN=jnp.zeros((b, n), bool),
        open_B1=jnp.ones((b, 1), bool))
    beams, rows_R, next_R, go = _beam_step(plan, knobs, beams, logits_RV, jnp.int32(0))

    def cond(carry):
        i, go = carry[0], carry[-1]
        return go & (i < m)

    def body(carry):
        i, state, beams, rows_R, next_R, _ = carry
        state, logits_RV = decoder.step(decoder.cfg, params, decoder.reorder(state, rows_R), next_R)
        beams, rows_R, next_R, go = _beam_step(plan, knobs, beams, logits_RV, i)
        return i + 1, state, beams, rows_R, next_R, go

    beams = jax.lax.while_loop(cond, body, (jnp.int32(1), state, beams, rows_R, next_R, go))[2]
    return beams.done_tok_BNM[:, 0], beams.done_len_BN[:, 0], beams.done_score_BN[:, 0]


def _search(decoder: Decoder, plan: _Plan, knobs, params, tokens_BT, mask_BT, key):
    if plan.num_beams > 1:
        return _beam_search(decoder, plan, knobs, params, tokens_BT, mask_BT)
    return _sample(decoder, plan, knobs, params, tokens_BT, mask_BT, key)


_search_jit = jax.jit(_search, static_argnums=(0, 1))


def generate_tokens(decoder: Decoder, config: GenerationConfig, params, tokens_BT, mask_BT, key):
    """The search on left-padded prompts `[B, T]` + mask, jitted (one compilation per decoder, batch shape and
    strategy — greedy, sampling with / without each filter, beam count — whatever the temperature, k, p, length
    penalty and early stopping): `(tokens_BN, lengths_B, scores_B or None)` as arrays. `config.stop_token_ids` is
    used as given (None = none)."""
    return _search_jit(decoder, _Plan.of(config), _knobs(config), params, tokens_BT, mask_BT, key)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """`(tokens_BT, mask_BT)`: the prompts right-aligned in `[B, max length]` int32, padded on the left.

    Raises:
      ValueError: no prompts, or an empty one (the first token needs a context; GPT-2 starts unconditional
        samples from `<|endoftext|>`).
    """
    if not prompts:
        raise ValueError("No prompts to generate from: pass at least one list of token ids.")
    empty = [i for i, p in enumerate(prompts) if len(p) == 0]
    if empty:
        raise ValueError(f"Prompts {empty} are empty: give each at least one token (e.g. the end-of-text token, "
                         "from which GPT-2 samples unconditionally).")
    t = max(len(p) for p in prompts)
    tokens = np.full((len(prompts), t), pad_id, np.int32)
    mask = np.zeros((len(prompts), t), bool)
    for row, p in enumerate(prompts):
        tokens[row, t - len(p):] = np.asarray(p, np.int32)
        mask[row, t - len(p):] = True
    return tokens, mask


def generate(decoder: Decoder, params, prompts: Sequence[Sequence[int]], config: GenerationConfig | None = None, *,
             seed: int = 0) -> GenerateOutput:
    """Generates a continuation of each prompt (a batch of token-id lists of any lengths).

    Args:
      decoder: the family's decoder steps (`decoder_for`).
      params: the model's params.
      prompts: B lists of token ids.
      config: the strategy and limits (`stop_token_ids=None`: the decoder's); see the module docstring for what
        makes the search compile again.
      seed: the sampling RNG seed (`jax.random.key`); unused by greedy and beam search.

    Returns:
      `GenerateOutput` (numpy).

    Raises:
      ValueError: bad settings, an empty prompt, ids outside the vocabulary, or a prompt plus `max_new_tokens`
        beyond the model's positions — before anything compiles.
    """
    config = config or GenerationConfig()
    config = dataclasses.replace(config, stop_token_ids=decoder.stop_token_ids if config.stop_token_ids is None
                                 else tuple(int(i) for i in config.stop_token_ids))
    vocab = decoder.cfg.vocab_size
    config.validate(vocab)
    tokens_BT, mask_BT = left_pad(prompts, config.pad_id)
    ids = tokens_BT[mask_BT]
    bad = np.unique(ids[(ids < 0) | (ids >= vocab)]).tolist()
    if bad:
        raise ValueError(f"Prompt token ids {bad[:5]} are outside the model's vocabulary [0, {vocab}); was the "
                         "prompt encoded with the model's own tokenizer?")
    tokens_BN, lengths_B, scores_B = jax.device_get(
        generate_tokens(decoder, config, params, tokens_BT, mask_BT, jax.random.key(seed)))
    return GenerateOutput(np.asarray(tokens_BN), np.asarray(lengths_B),
                          None if scores_B is None else np.asarray(scores_B))


__all__ = ["EARLY_STOPPING", "Decoder", "GenerateOutput", "GenerationConfig", "decoder_for", "generate",
           "generate_tokens", "left_pad", "top_k_filter", "top_p_filter", "warp_logits"]

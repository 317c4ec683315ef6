"""Span corruption (Raffel et al. 2020, T5 §3.3.4 and §3.1.4): the encoder reads the text with random spans dropped,
each replaced by one sentinel; the decoder writes the dropped spans, each after its sentinel.

    original:  Thank you for inviting me to your party last week .
    inputs:    Thank you <X> me to your party <Y> week . </s>
    targets:   <X> for inviting <Y> last <Z> </s>

The numerics are those of google-research/text-to-text-transfer-transformer `t5/data/preprocessors.py`
(`span_corruption`), written anew in numpy:

* the documents of the split are concatenated without separators (`reduce_concat_tokens`) and cut into chunks of
  `tokens_length` raw tokens (`split_tokens`; the last chunk may be shorter);
* `random_spans_noise_mask`: of n tokens, `round(n · noise_density)` are noise (at least 1, at most n − 1), in
  `round(noise / mean_noise_span_length)` spans (at least 1); noise and non-noise tokens are each split into that
  many non-empty spans uniformly at random, and the spans alternate, non-noise first;
* `noise_span_to_unique_sentinel` builds the inputs (each noise span → one sentinel, `<extra_id_0>` first),
  `nonnoise_span_to_unique_sentinel` the targets (each non-noise span → one sentinel, so sentinel i precedes noise
  span i); both end with eos;
* `random_spans_helper` sizes everything: `tokens_length` is the longest chunk whose inputs (non-noise tokens + one
  sentinel per span + eos) fit `data.seq_len`, and the targets' length (noise tokens + one sentinel per span + eos)
  follows: 568 raw tokens → 512 inputs and 114 targets (1137 → 1024 and 229 at 1024). The inputs always fill
  `data.seq_len` exactly; only a shorter last chunk is padded.

One deliberate difference: T5's helper counts in float64 without the mask's guards (≥ 1 noise token, ≥ 1 span)
while its mask counts in float32 with them, so the two disagree at some lengths (190 raw tokens: 28 noise tokens
planned, 29 drawn; and every chunk under 10 tokens) and T5's targets can outgrow the planned length by a token.
Here both use the mask's counts (`span_counts`), so the planned lengths always hold what is drawn; at 512 and 1024
they equal the helper's.

The noise is drawn afresh for every (seed, epoch, example) (T5 corrupts on the fly, after caching). The loss is the
targets' cross-entropy normalised by the global batch's number of target tokens (`loss_denominators`), so gradient
accumulation is exact.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from llm_jax.objectives.base import Objective, ObjectiveConfigBase, check_token_ids, register, token_loss_fn

# Mixed into each row's seed so that these draws never coincide with another objective's stream.
_STREAM = 3_000_017


@dataclasses.dataclass(frozen=True)
class SpanCorruptionConfig(ObjectiveConfigBase):
    """Span-corruption hyperparameters (T5 §3.3.4; `span_corruption`'s arguments).

    Attributes:
      name: `span_corruption`.
      noise_density: share of the raw tokens that are dropped (0.15).
      mean_noise_span_length: mean length of a dropped span (3).
    """

    name: str = "span_corruption"
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0

    def validate(self):
        if not 0.0 < self.noise_density < 1.0:
            raise ValueError(f"objective.noise_density={self.noise_density} must be in (0, 1) (T5: 0.15).")
        if not self.mean_noise_span_length >= 1.0:
            raise ValueError(f"objective.mean_noise_span_length={self.mean_noise_span_length} must be ≥ 1 (T5: 3).")
        return self


def span_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """`(noise tokens, noise spans)` of a chunk of `length` raw tokens (`random_spans_noise_mask`'s counts, with its
    guards: ≥ 1 noise token, ≤ length − 1 of them, ≥ 1 span; and no more spans than non-noise tokens, which only a
    density above ~0.75 could ask for)."""
    length = max(int(length), 2)
    # Why float32 and np.round: the mask's arithmetic (`tf.round(to_float(length) * noise_density)`, half to even).
    f32 = np.float32
    noise = min(max(int(np.round(f32(length) * f32(noise_density))), 1), length - 1)
    spans = max(int(np.round(f32(noise) / f32(mean_noise_span_length))), 1)
    return noise, min(spans, length - noise)


def corrupted_lengths(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """`(inputs, targets)` lengths, eos included, that a chunk of `length` raw tokens becomes."""
    noise, spans = span_counts(length, noise_density, mean_noise_span_length)
    return length - noise + spans + 1, noise + spans + 1


@dataclasses.dataclass(frozen=True)
class SpanLengths:
    """How long things are for one `data.seq_len` (T5's `random_spans_helper` with one sentinel per span).

    Attributes:
      tokens: raw tokens per example (the chunk length).
      inputs: encoder inputs, eos included (= `data.seq_len`).
      targets: decoder targets, eos included.
      spans: noise spans (= sentinels) in a full chunk.
    """

    tokens: int
    inputs: int
    targets: int
    spans: int


def span_lengths(inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0) -> SpanLengths:
    """The raw chunk length whose corrupted inputs fill `inputs_length`, and the targets' length.

    As T5's `random_spans_helper`: the longest chunk whose inputs fit, and (only at density 0.5) one token less when
    the targets would otherwise outgrow the inputs. The inputs grow by 0 or 1 per extra raw token, so they fill
    `inputs_length` exactly.

    Raises:
      ValueError: `inputs_length` below 3 (one token, one sentinel, eos).
    """
    if inputs_length < 3:
        raise ValueError(f"data.seq_len={inputs_length} cannot hold a corrupted example (a token, a sentinel and eos); "
                         "use at least 8.")
    tokens = inputs_length - 1
    while corrupted_lengths(tokens + 1, noise_density, mean_noise_span_length)[0] <= inputs_length:
        tokens += 1
    inputs, targets = corrupted_lengths(tokens, noise_density, mean_noise_span_length)
    if noise_density == 0.5 and targets > inputs:
        tokens -= 1
        inputs, targets = corrupted_lengths(tokens, noise_density, mean_noise_span_length)
    return SpanLengths(tokens=tokens, inputs=inputs, targets=targets,
                       spans=span_counts(tokens, noise_density, mean_noise_span_length)[1])


def _random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of `num_segments` non-empty segments summing to `num_items`, every such split equally likely."""
    starts = np.zeros(num_items - 1, np.int64)
    starts[rng.choice(num_items - 1, num_segments - 1, replace=False)] = 1
    segment_id = np.concatenate([[0], np.cumsum(starts)])
    return np.bincount(segment_id, minlength=num_segments)


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
    """Boolean `[length]`, True on noise: alternating non-noise / noise spans, non-noise first, with the counts of
    `span_counts`, all such masks equally likely (T5's `random_spans_noise_mask`)."""
    padded = max(int(length), 2)
    noise, spans = span_counts(padded, noise_density, mean_noise_span_length)
    noise_lengths = _random_segmentation(noise, spans, rng)
    nonnoise_lengths = _random_segmentation(padded - noise, spans, rng)
    interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)
    return np.repeat(np.tile([False, True], spans), interleaved)[:length]


def _spans_to_sentinels(tokens: np.ndarray, span_mask: np.ndarray, sentinels: np.ndarray) -> np.ndarray:
    """Each run of `span_mask` replaced by one sentinel, the i-th run by `sentinels[i]`
    (`noise_span_to_unique_sentinel`)."""
    previous = np.concatenate([[False], span_mask[:-1]])
    first = span_mask & ~previous
    replaced = np.where(first, sentinels[np.maximum(np.cumsum(first) - 1, 0)], tokens)
    return replaced[~(span_mask & previous)]


def corrupt_spans(tokens: np.ndarray, noise_mask: np.ndarray, sentinels: np.ndarray,
                  eos: int) -> tuple[np.ndarray, np.ndarray]:
    """`(inputs, targets)` of one chunk: noise spans → sentinels in the inputs, non-noise spans → sentinels in the
    targets, eos appended to both.

    Args:
      tokens: the raw ids `[n]`.
      noise_mask: `random_spans_noise_mask(n, ...)`.
      sentinels: `sentinels[i]` is the id of `<extra_id_i>`.
      eos: the end-of-sequence id.
    """
    end = np.asarray([eos], tokens.dtype)
    return (np.concatenate([_spans_to_sentinels(tokens, noise_mask, sentinels), end]),
            np.concatenate([_spans_to_sentinels(tokens, ~noise_mask, sentinels), end]))


@register
class SpanCorruption(Objective):
    """T5's pretraining objective over concatenated documents (see the module docstring)."""

    name = "span_corruption"
    Config = SpanCorruptionConfig
    required_roles = ("pad", "eos", "sentinels")
    progress_keys = ("loss", "accuracy", "tokens_per_s")
    heads = ("lm",)

    def lengths(self, seq_len: int) -> SpanLengths:
        """Raw, input and target lengths for `data.seq_len`."""
        return span_lengths(seq_len, self.cfg.noise_density, self.cfg.mean_noise_span_length)

    @classmethod
    def predicted_positions_for(cls, cfg, seq_len: int) -> int:
        """The decoder predicts each of its target positions."""
        return span_lengths(seq_len, cfg.noise_density, cfg.mean_noise_span_length).targets

    def _check_sentinels(self, spans: int, seq_len_hint: str) -> None:
        if spans > len(self.special.sentinels):
            raise ValueError(f"{seq_len_hint} makes {spans} noise spans per example but the tokenizer has only "
                             f"{len(self.special.sentinels)} sentinels (<extra_id_i>); train it with more "
                             "(TokenizerSpec extra_ids) or shorten data.seq_len.")

    # ------------------------------------------------------------------ host side
    def build_examples(self, docs_ids: list[list[np.ndarray]], seq_len: int, seed: int, *,
                       batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Chunks of `lengths(seq_len).tokens` raw tokens of the concatenated documents (`reduce_concat_tokens` +
        `split_tokens`), in corpus order; the loader shuffles them and `prepare` corrupts them.

        Returns:
          `{"tokens": int32 [N, L], "mask": bool [N, L]}` (the last chunk padded).

        Raises:
          ValueError: no tokens, ids outside the vocabulary, or more spans than sentinels.
        """
        del seed, batch_size
        lengths = self.lengths(seq_len)
        self._check_sentinels(lengths.spans, f"data.seq_len={seq_len}")
        pieces = [np.asarray(s, np.int32).reshape(-1) for doc in docs_ids for s in doc]
        stream = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
        if not stream.size:
            raise ValueError("The span_corruption objective got no tokens: every document was empty. Check the corpus "
                             "and the tokenizer.")
        check_token_ids(stream, self.vocab_size)
        n, length = -(-stream.size // lengths.tokens), lengths.tokens
        tokens = np.full(n * length, self.special.pad, np.int32)
        tokens[:stream.size] = stream
        mask = np.zeros(n * length, bool)
        mask[:stream.size] = True
        return {"tokens": tokens.reshape(n, length), "mask": mask.reshape(n, length)}

    def prepare(self, examples: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        """Corrupts each row (noise from (seed, epoch, example index)): `inputs` `[B, S]` with their padding `mask`,
        `targets` `[B, T]`, `decoder_inputs` (the targets shifted right behind the decoder start, T5's pad id) and
        `target_weights` (1 on real targets). S and T follow from the rows' length L (`lengths`)."""
        tokens, mask = examples["tokens"], examples["mask"].astype(bool)
        b, length = tokens.shape
        cfg = self.cfg
        s, t = corrupted_lengths(length, cfg.noise_density, cfg.mean_noise_span_length)
        self._check_sentinels(span_counts(length, cfg.noise_density, cfg.mean_noise_span_length)[1],
                              f"a row of {length} raw tokens")
        pad, eos = self.special.pad, self.special.eos
        sentinels = np.asarray(self.special.sentinels, np.int32)
        inputs = np.full((b, s), pad, np.int32)
        targets = np.full((b, t), pad, np.int32)
        input_mask = np.zeros((b, s), bool)
        weights = np.zeros((b, t), np.float32)
        for r in range(b):
            row = tokens[r][mask[r]].astype(np.int32)
            rng = np.random.default_rng((seed, _STREAM, int(examples["epoch"][r]), int(examples["example_index"][r])))
            noise = random_spans_noise_mask(row.size, cfg.noise_density, cfg.mean_noise_span_length, rng)
            x, y = corrupt_spans(row, noise, sentinels, eos)
            inputs[r, :x.size], input_mask[r, :x.size] = x, True
            targets[r, :y.size], weights[r, :y.size] = y, 1.0
        decoder_inputs = np.concatenate([np.full((b, 1), pad, np.int32), targets[:, :-1]], axis=1)
        return {"inputs": inputs, "mask": input_mask, "decoder_inputs": decoder_inputs, "targets": targets,
                "target_weights": weights}

    def dummy_batch(self, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
        lengths = self.lengths(seq_len)
        s, t = lengths.inputs, lengths.targets
        return {"inputs": np.zeros((batch_size, s), np.int32), "mask": np.ones((batch_size, s), bool),
                "decoder_inputs": np.zeros((batch_size, t), np.int32), "targets": np.zeros((batch_size, t), np.int32),
                "target_weights": np.ones((batch_size, t), np.float32)}

    def init_inputs(self, batch):
        """The encoder inputs and mask, and the decoder inputs (teacher forcing)."""
        return (batch["inputs"],), {"mask_BT": batch["mask"], "decoder_tokens_BT": batch["decoder_inputs"]}

    # ------------------------------------------------------------------ device side
    def loss_denominators(self, batch):
        """The number of target tokens (eos included) in the whole batch."""
        return {"targets": jnp.sum(batch["target_weights"].astype(jnp.float32))}

    def make_loss(self, model, frozen_models=None):
        """`loss(params, batch, rng, ...) -> (loss, (metrics, carry))` for an encoder-decoder whose output has
        `logits_BTV` over the decoder positions: mean target cross-entropy (nats) and top-1 `accuracy`."""

        return token_loss_fn(self, model, targets="targets", weights="target_weights", denominator="targets")


__all__ = ["SpanCorruption", "SpanCorruptionConfig", "SpanLengths", "corrupt_spans", "corrupted_lengths",
           "random_spans_noise_mask", "span_counts", "span_lengths"]

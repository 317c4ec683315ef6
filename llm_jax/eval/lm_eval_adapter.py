"""EleutherAI's lm-evaluation-harness (`lm-eval`, an optional extra) on our models: its `LM` interface over our scoring
and generation.

    from llm_jax.eval.lm_eval_adapter import LlmJaxLM
    lm = LlmJaxLM("runs/gpt2-tiny")                      # a run / model directory of ours, or a Hugging Face one
    lm_eval.simple_evaluate(model=lm, tasks=["lambada_openai"], ...)

or, with the registered name, `lm_eval --model llm_jax --model_args pretrained=runs/gpt2-tiny ...`. The three
request types:

* `loglikelihood((context, continuation))` → `(log p(continuation | context), is_greedy)`: causal LMs through
  `score.causal_loglikelihood`, the pair encoded as lm-eval's Hugging Face model does (`in_context.encode_pair`:
  the whole text once, split after the context's tokens; an empty context becomes the end-of-text token);
  encoder-decoders through `score.seq2seq_loglikelihood`, the context the source and the continuation (without its
  leading space) the target, as lm-eval's seq2seq models do;
* `loglikelihood_rolling((text,))` → Σ log p over every token of the text, the first predicted from the
  end-of-text token (causal LMs: `score.causal_perplexity` with windows of the model's length overlapping by one
  token — every token predicted once);
* `generate_until((context, {"until": [...], "max_gen_toks": N, ...}))` → greedy text (`llm_jax.generate`), cut
  at the first stop string.

`llm-jax evaluate` uses the same encoding and scorers, so its accuracy on a multiple-choice task equals lm-eval's
`acc` with the same prompts (a test checks it).
"""

from __future__ import annotations

from typing import Any

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as e:  # an optional extra
    raise ImportError(f"The lm-eval adapter needs lm-evaluation-harness ({e}); install it with "
                      "pip install 'llm_jax[lm-eval]'.") from None

from llm_jax import models
from llm_jax.data.tokenizer import special_ids
from llm_jax.eval import score
from llm_jax.eval.in_context import encode_pair


@register_model("llm_jax")
class LlmJaxLM(LM):
    """An lm-eval `LM` over one of our models.

    Args:
      pretrained: a run / checkpoint / model directory of ours or a Hugging Face directory (`load_pretrained`),
        or a `(family, config, params, tokenizer)` tuple.
      batch_size: rows per compiled forward pass.
      max_gen_toks: `generate_until`'s default limit when a request gives none.

    Raises:
      ValueError: a model without a tokenizer, or of a kind lm-eval cannot score (a masked LM).
    """

    def __init__(self, pretrained: Any = None, batch_size: int | str = 8, max_gen_toks: int = 256, **_):
        super().__init__()
        if isinstance(pretrained, (tuple, list)):
            family, config, params, tokenizer = pretrained
        else:
            from llm_jax.interop.native import load_pretrained

            family, config, params, tokenizer = load_pretrained(pretrained)
        if tokenizer is None:
            raise ValueError("The lm-eval adapter needs the model's tokenizer; point at a directory with tokenizer.json.")
        self.kind = models.family_module(family).LM_KIND
        if self.kind not in ("causal", "seq2seq"):
            raise ValueError(f"lm-eval scores causal and encoder-decoder LMs; {family} is a {self.kind} LM (use "
                             "llm-jax evaluate, which scores masked LMs by cloze).")
        self.family, self.config, self.params, self.tokenizer = family, config, params, tokenizer
        self.batch = int(batch_size) if str(batch_size).isdigit() else 8
        self.max_gen_toks = max_gen_toks
        sp = special_ids(tokenizer)
        self.eot = sp.eod if sp.eod is not None else sp.eos

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> LlmJaxLM:
        args = dict(kv.split("=", 1) for kv in arg_string.split(",") if kv)
        args.update({k: v for k, v in (additional_config or {}).items() if v is not None})
        return cls(**args)

    # ------------------------------------------------------------------------------------------- requests

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        pairs = [r.args for r in requests]
        if self.kind == "causal":
            encoded = [encode_pair(self.tokenizer, c, x, self.eot) for c, x in pairs]
            scores = score.causal_loglikelihood(self.family, self.config, self.params, encoded, batch_size=self.batch)
        else:
            encoded = [(self.tokenizer.encode(c).ids, self.tokenizer.encode(x.lstrip()).ids) for c, x in pairs]
            scores = score.seq2seq_loglikelihood(self.family, self.config, self.params, encoded, batch_size=self.batch)
        return [(s.total, s.greedy) for s in scores]

    def loglikelihood_rolling(self, requests) -> list[float]:
        if self.kind != "causal":
            raise ValueError(f"loglikelihood_rolling needs a causal LM; this is a {self.kind} LM.")
        if self.eot is None:
            raise ValueError("loglikelihood_rolling predicts the first token from the end-of-text token; the "
                             "tokenizer has none.")
        out = []
        window = self.config.max_seq_len
        for r in requests:
            ids = [self.eot, *self.tokenizer.encode(r.args[0], add_special_tokens=False).ids]
            if len(ids) < 2:
                out.append(0.0)
                continue
            w = min(window, len(ids))
            result = score.causal_perplexity(self.family, self.config, self.params, ids, window=w,
                                             stride=max(w - 1, 1), batch_size=self.batch)
            out.append(-result.nll)
        return out

    def generate_until(self, requests) -> list[str]:
        from llm_jax.generate import GenerationConfig, decoder_for, generate

        decoder = decoder_for(self.family, self.config)
        special = self.kind != "causal"
        out = []
        for r in requests:
            context, kwargs = r.args
            kwargs = dict(kwargs or {})
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            n = int(kwargs.get("max_gen_toks", self.max_gen_toks))
            ids = self.tokenizer.encode(context, add_special_tokens=special).ids or [self.eot]
            room = self.config.max_seq_len - (n if not special else 0)
            ids = ids[-max(room, 1):]
            seq = generate(decoder, self.params, [ids], GenerationConfig(max_new_tokens=n)).sequences()[0]
            text = self.tokenizer.decode(seq)
            for stop in until:
                if stop and stop in text:
                    text = text[:text.index(stop)]
            out.append(text)
        return out


__all__ = ["LlmJaxLM"]

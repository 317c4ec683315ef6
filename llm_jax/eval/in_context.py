"""In-context learning: a task solved by prompting with K demonstrations and no gradient step (GPT-3 §2, Figure 2.1).

K labelled examples are drawn from the task's training split (seeded, class-balanced where labels exist:
`few_shot_subset`), written with the task's template (`TaskSpec.template`, ending in `{answer}`) and joined by a
blank line; the query follows, written the same way up to `{answer}`. Then, by the model's kind:

* **causal LM** — each candidate answer (the label's verbalizer word; a multiple-choice question's choice) is
  scored as a continuation of that context, log p(" answer" | context) (`score.causal_loglikelihood`); the space
  before `{answer}` belongs to the continuation, as in lm-eval. The prediction is the best candidate by the summed
  log-likelihood (`normalize="none"`, lm-eval's `acc`), its per-token mean (`"token"`, GPT-3's choice for most
  tasks) or its log-likelihood per character (`"char"`, lm-eval's `acc_norm` per byte);
* **encoder-decoder** — the context is the source and each candidate the target (T5's text-to-text scoring,
  `score.seq2seq_loglikelihood`);
* **masked LM** — the cloze prompt (the task's `prompt`, or the template with `{answer}` as `{mask}`) after the
  demonstrations, each shown with its label word (LM-BFF's demonstrations, Gao et al. 2021 §6); candidates are
  scored at the mask by the MLM head (`llm_jax.eval.cloze`), or — with `scorer="discriminator"` on a
  replaced-token detector (ELECTRA) — each label word is filled in and the one the discriminator finds least
  "replaced" wins (the mean log P(original) over its tokens; Xia et al. 2022);
* **generative tasks** (span: extractive QA) — greedy decoding after the context, cut at the first line break,
  scored by SQuAD EM / F1.

K = 0 is zero-shot. When context + answer would not fit the model's positions, demonstrations are dropped (the
ones farthest from the query first), and the result reports how many; a query that does not fit even alone is cut
from its start.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

import numpy as np
import tokenizers

from llm_jax import models
from llm_jax.data.features import Encoded
from llm_jax.data.tasks import Task, TaskSpec, few_shot_subset, labels_of
from llm_jax.data.tokenizer import special_ids
from llm_jax.eval import metrics as metrics_lib
from llm_jax.eval import score as score_lib
from llm_jax.eval.predict import has_labels, majority_baseline
from llm_jax.eval.predict import score as task_score

log = logging.getLogger(__name__)

NORMALIZE = ("none", "token", "char")
SCORERS = ("auto", "loglikelihood", "cloze", "discriminator")
SEPARATOR = "\n\n"
_FIELD = re.compile(r"\{([a-z_]+)\}")


@dataclasses.dataclass(frozen=True)
class InContextConfig:
    """How to evaluate in context.

    Attributes:
      shots: K demonstrations (0 = zero-shot; ≥ the training split = all of it).
      seed: draws the demonstrations and their order.
      template: overrides the task's template (must contain `{answer}`, or `{mask}` for the cloze scorer).
      normalize: `none`, `token` or `char` (see the module docstring).
      split: the split evaluated.
      limit: evaluate only the split's first `limit` examples (0 = all).
      scorer: `auto` (by the model's kind), `loglikelihood`, `cloze` or `discriminator`.
      max_new_tokens: generative tasks: tokens decoded per answer.
      batch_size: rows per compiled forward pass.
    """

    shots: int = 0
    seed: int = 0
    template: str = ""
    normalize: str = "none"
    split: str = "validation"
    limit: int = 0
    scorer: str = "auto"
    max_new_tokens: int = 32
    batch_size: int = 8

    def validate(self) -> InContextConfig:
        if self.shots < 0:
            raise ValueError(f"--shots={self.shots} must be ≥ 0.")
        if self.normalize not in NORMALIZE:
            raise ValueError(f"--normalize={self.normalize!r}: choose one of {NORMALIZE}.")
        if self.scorer not in SCORERS:
            raise ValueError(f"--scorer={self.scorer!r}: choose one of {SCORERS}.")
        if self.limit < 0 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("--limit must be ≥ 0, the batch size and --max-new-tokens ≥ 1.")
        return self


# --------------------------------------------------------------------------------------------- templates


def default_template(spec: TaskSpec, record: dict[str, Any]) -> str:
    """The template of a task that names none: its text fields, one per line, then `Answer: {answer}`."""
    if spec.kind == "multiple_choice":
        return "{context}\nAnswer: {answer}" if record.get("context") else "Answer: {answer}"
    if spec.kind == "span":
        return "{context}\nQuestion: {question}\nAnswer: {answer}"
    fields = [f for f in ("text_a", "text_b") if f in record]
    return "\n".join("{" + f + "}" for f in fields) + "\nAnswer: {answer}"


def fill(template: str, record: dict[str, Any], answer: str | None = None) -> str:
    """The template with each `{field}` replaced by the record's value and `{answer}` by `answer`.

    Raises:
      ValueError: a field the record lacks.
    """
    def one(m):
        name = m.group(1)
        if name == "answer":
            if answer is None:
                raise ValueError("fill() needs the answer for a template with {answer}.")
            return answer
        if name == "mask":
            return m.group(0)
        if name not in record:
            raise ValueError(f"The template {template!r} names {{{name}}}, which the task's records lack (they have "
                             f"{sorted(k for k in record if k != 'label')}); fix --template.")
        return str(record[name])

    return _FIELD.sub(one, template)


def split_template(template: str) -> tuple[str, str, str]:
    """`(prefix, lead, suffix)` around `{answer}`: the context part, the space before the answer (which belongs to
    the continuation, as in lm-eval) and the text after it.

    Raises:
      ValueError: a template without exactly one `{answer}`.
    """
    if template.count("{answer}") != 1:
        raise ValueError(f"The in-context template {template!r} must contain exactly one {{answer}}.")
    prefix, suffix = template.split("{answer}")
    lead = " " if prefix.endswith(" ") else ""
    return prefix[:len(prefix) - len(lead)], lead, suffix


def candidates(spec: TaskSpec, record: dict[str, Any]) -> list[str]:
    """The answers scored for a record: a classification label's verbalizer (else its name), or the choices.

    Raises:
      ValueError: a kind that has no candidates (regression, token tasks; span tasks are generated).
    """
    if spec.kind == "classification":
        words = spec.verbalizers if len(spec.verbalizers) == spec.num_labels else spec.label_names
        if len(words) != spec.num_labels:
            raise ValueError(f"Task {spec.name!r} has neither verbalizers nor label names for its {spec.num_labels} "
                             "labels; in-context scoring needs one word per label.")
        return list(words)
    if spec.kind == "multiple_choice":
        return [str(c) for c in record["choices"]]
    raise ValueError(f"In-context evaluation scores classification, multiple-choice and span tasks; {spec.name!r} is "
                     f"a {spec.kind} task.")


def answer_of(spec: TaskSpec, record: dict[str, Any]) -> str:
    """The gold answer text a demonstration shows."""
    if spec.kind == "span":
        return record["answers"][0] if record["answers"] else "unanswerable"
    return candidates(spec, record)[int(record["label"])]


def demonstrations(task: Task, shots: int, seed: int) -> list[dict[str, Any]]:
    """K training records, class-balanced when labelled (`few_shot_subset`), in a seed-determined order.

    Raises:
      ValueError: K > 0 and the task has no training split.
    """
    if shots == 0:
        return []
    train = task.splits.get("train") or []
    if not train:
        raise ValueError(f"Task {task.spec.name!r} has no training split to draw demonstrations from; use --shots 0.")
    idx = few_shot_subset(labels_of(train), len(train), shots, seed)
    return [train[i] for i in np.random.default_rng([seed, 7919]).permutation(idx)]


# ---------------------------------------------------------------------------------------------- encoding


def encode_pair(tok: tokenizers.Tokenizer, context: str, continuation: str, empty_context_id: int | None
                ) -> tuple[list[int], list[int]]:
    """Token ids of a context and its continuation for a causal LM, as lm-eval's Hugging Face model makes them:
    the whole text encoded once and split after the context's own tokens; an empty context becomes the
    end-of-text token. No special tokens are added."""
    whole = tok.encode(context + continuation, add_special_tokens=False).ids
    ctx = tok.encode(context, add_special_tokens=False).ids if context else []
    cont = whole[len(ctx):]
    if not ctx:
        if empty_context_id is None:
            raise ValueError("An empty context needs an end-of-text token to start from; the tokenizer has none.")
        ctx = [empty_context_id]
    return ctx, cont


@dataclasses.dataclass
class _Overflow:
    dropped: int = 0
    examples: int = 0
    truncated: int = 0
    used: list = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"demonstrations_used_mean": float(np.mean(self.used)) if self.used else 0.0,
                "context_overflow": {"examples_with_dropped_demonstrations": self.examples,
                                     "demonstrations_dropped": self.dropped, "queries_truncated": self.truncated}}


class _Fitter:
    """Builds each query's context: as many demonstrations (the last ones, nearest the query) as fit `budget`
    tokens, then the query. `count(text)` counts a text's tokens without special tokens; `extra` is what the
    encoding adds around it (special tokens, the longest continuation)."""

    def __init__(self, demo_texts: list[str], count, extra: int, budget: int, overflow: _Overflow):
        self.demo_texts, self.count, self.extra, self.budget, self.overflow = demo_texts, count, extra, budget, overflow
        self.demo_counts = [count(t + SEPARATOR) for t in demo_texts]

    def __call__(self, query: str) -> str:
        n = len(self.demo_texts)
        k, total = n, sum(self.demo_counts)
        need = self.count(query) + self.extra
        while k and total + need > self.budget:  # estimate from the per-demonstration counts ...
            total -= self.demo_counts[n - k]
            k -= 1
        text = SEPARATOR.join([*self.demo_texts[n - k:], query])
        while k and self.count(text) + self.extra > self.budget:  # ... then check the joined text exactly
            k -= 1
            text = SEPARATOR.join([*self.demo_texts[n - k:], query])
        if k < n:
            self.overflow.examples += 1
            self.overflow.dropped += n - k
        if self.count(text) + self.extra > self.budget:
            self.overflow.truncated += 1
        self.overflow.used.append(k)
        return text


def _counter(tok: tokenizers.Tokenizer):
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def _specials(tok: tokenizers.Tokenizer) -> int:
    """How many special tokens the tokenizer's template adds to one text."""
    return len(tok.encode("a", add_special_tokens=True).ids) - len(tok.encode("a", add_special_tokens=False).ids)


# --------------------------------------------------------------------------------------------- evaluation


def _pick(scores: list[list[score_lib.Score]], texts: list[list[str]], normalize: str) -> np.ndarray:
    """`[N, C_max]` candidate scores (−inf past a record's choices) under the normalisation."""
    width = max(len(s) for s in scores)
    out = np.full((len(scores), width), -np.inf, np.float64)
    for i, (row, words) in enumerate(zip(scores, texts)):
        for c, (s, w) in enumerate(zip(row, words)):
            out[i, c] = (s.total if normalize == "none" else s.mean if normalize == "token"
                         else s.total / max(len(w), 1))
    return out


def _loglikelihood_scores(family, config, params, tok, spec, records, demos, template, cfg, overflow):
    kind = models.family_module(family).LM_KIND
    sp = special_ids(tok)
    prefix, lead, suffix = split_template(template)
    demo_texts = [fill(template, d, answer_of(spec, d)) for d in demos]
    budget = config.max_seq_len
    cands = [candidates(spec, r) for r in records]
    count = _counter(tok)
    conts_all = [[lead + w + fill(suffix, r) for w in words] for r, words in zip(records, cands)]
    longest = max(count(c) for conts in conts_all for c in conts)
    fitter = _Fitter(demo_texts, count, longest if kind == "causal" else _specials(tok), budget, overflow)
    requests, shape = [], []
    for r, conts in zip(records, conts_all):
        context = fitter(fill(prefix, r))
        if kind == "causal":
            requests += [encode_pair(tok, context, c, sp.eod if sp.eod is not None else sp.eos) for c in conts]
        else:
            src = tok.encode(context).ids
            requests += [(src, tok.encode(c.strip()).ids) for c in conts]
        shape.append(len(conts))
    fn = score_lib.causal_loglikelihood if kind == "causal" else score_lib.seq2seq_loglikelihood
    flat = fn(family, config, params, requests, batch_size=cfg.batch_size)
    rows, s = [], 0
    for n in shape:
        rows.append(flat[s:s + n])
        s += n
    return _pick(rows, cands, cfg.normalize)


def _masked_scores(family, config, params, tok, spec, records, demos, template, cfg, overflow, scorer):
    from llm_jax.eval.cloze import build_prompts, cloze_scores, verbalizer_pieces

    if spec.kind != "classification":
        raise ValueError(f"A masked LM scores classification tasks in context (one label word per class); "
                         f"{spec.name!r} is a {spec.kind} task.")
    if "{mask}" in template:
        prompt = template
    elif cfg.template or not spec.prompt:
        prompt = template.replace("{answer}", "{mask}")
    else:
        prompt = spec.prompt
    words = candidates(spec, records[0])
    demo_texts = [fill(prompt, d).replace("{mask}", words[int(d["label"])]) for d in demos]
    seq_len = min(config.max_seq_len, 512)
    count = _counter(tok)
    longest = max(count(" " + w) for w in words)
    fitter = _Fitter(demo_texts, count, _specials(tok) + longest, seq_len, overflow)
    sized = []
    for r in records:
        query = fill(prompt, r).replace("{mask}", "")
        text = fitter(query)
        shown = text[:len(text) - len(query)].removesuffix(SEPARATOR) if text != query else ""
        sized.append({**r, "demonstrations": shown})
    full = ("{demonstrations}" + SEPARATOR + prompt) if demos else prompt
    spec = dataclasses.replace(spec, prompt=full, verbalizers=tuple(words))
    if demos and any(not r["demonstrations"] for r in sized):  # a field may not be empty in build_prompts
        for r in sized:
            r["demonstrations"] = r["demonstrations"] or " "
    if scorer == "cloze":
        return cloze_scores(family, config, params, tok, spec, sized, seq_len, cfg.batch_size)
    # The discriminator: every label word filled in at the mask; the least "replaced" wins.
    after_space = build_prompts(tok, full, sized[:1], seq_len)[3]
    pieces = verbalizer_pieces(tok, tuple(words), after_space)
    out = np.zeros((len(sized), len(words)), np.float64)
    for n_masks in sorted({len(p) for p in pieces}):
        inputs, mask, positions, _ = build_prompts(tok, full, sized, seq_len, n_masks)
        for c, p in enumerate(pieces):
            if len(p) != n_masks:
                continue
            filled = inputs.copy()
            np.put_along_axis(filled, positions, np.asarray(p, np.int32)[None, :], axis=1)
            lp = score_lib.original_log_probs(family, config, params, filled, mask, batch_size=cfg.batch_size)
            out[:, c] = np.take_along_axis(lp, positions, 1).mean(1)
    return out


def _generate_answers(family, config, params, tok, records, demos, template, spec, cfg, overflow) -> list[str]:
    from llm_jax.compression import quantize
    from llm_jax.generate import GenerationConfig, decoder_for, generate

    # The family's decoder steps build their own modules: an int8 model generates with its dequantized weights.
    config, params = quantize.as_float(family, config, params, "generation")
    decoder = decoder_for(family, config)
    kind = models.family_module(family).LM_KIND
    prefix, _, _ = split_template(template)
    demo_texts = [fill(template, d, answer_of(spec, d)) for d in demos]
    budget = config.max_seq_len - (cfg.max_new_tokens if kind == "causal" else 0)
    special = kind != "causal"
    fitter = _Fitter(demo_texts, _counter(tok), _specials(tok) if special else 0, budget, overflow)
    answers = []
    for s in range(0, len(records), cfg.batch_size):
        prompts = []
        for r in records[s:s + cfg.batch_size]:
            context = fitter(fill(prefix, r).rstrip())
            prompts.append(tok.encode(context, add_special_tokens=special).ids[-budget:])
        out = generate(decoder, params, prompts, GenerationConfig(max_new_tokens=cfg.max_new_tokens))
        answers += [tok.decode(ids).strip().split("\n")[0].strip() for ids in out.sequences()]
    return answers


def evaluate_in_context(family: str, config, params, tokenizer: tokenizers.Tokenizer, task: Task,
                        cfg: InContextConfig) -> dict[str, Any]:
    """Evaluates a model on a task with K in-context demonstrations (see the module docstring).

    Returns:
      A JSON-able dict: the task's metrics (its main metric first), `shots`, `n`, `seed`, `split`, `scorer`,
      `normalize`, `template`, `majority_baseline`, `demonstrations_used_mean` and `context_overflow`.

    Raises:
      ValueError: a bad setting, a split that is missing or has no labels, a task the model's kind cannot score,
        or a template that does not fit the task.
    """
    cfg.validate()
    spec = task.spec
    module = models.family_module(family)
    records = task.splits.get(cfg.split) or []
    if not records:
        raise ValueError(f"Task {spec.name!r} has no {cfg.split!r} split; choose one of "
                         f"{[s for s, r in task.splits.items() if r]} with --split.")
    if not has_labels(spec, cfg.split, records):
        raise ValueError(f"The {cfg.split} split of {spec.name!r} has no labels; evaluate another with --split.")
    if cfg.limit:
        records = records[:cfg.limit]
    scorer = cfg.scorer
    if scorer == "auto":
        scorer = "cloze" if module.LM_KIND == "masked" else "loglikelihood"
    if (scorer == "loglikelihood") == (module.LM_KIND == "masked"):
        raise ValueError(f"--scorer={scorer} does not fit a {module.LM_KIND} LM ({family}): masked LMs score by cloze "
                         "or discriminator, causal and encoder-decoder LMs by loglikelihood.")
    if module.LM_KIND not in ("masked", "causal", "seq2seq"):
        raise ValueError(f"In-context evaluation scores masked, causal and encoder-decoder LMs; {family} is a "
                         f"{module.LM_KIND} LM.")
    template = cfg.template or spec.template or default_template(spec, records[0])
    if "{mask}" not in template:
        split_template(template)
    demos = demonstrations(task, cfg.shots, cfg.seed)
    overflow = _Overflow()
    if spec.kind == "span":
        if module.LM_KIND == "masked":
            raise ValueError(f"{spec.name!r} is answered by generating text, which a masked LM ({family}) cannot do.")
        preds = _generate_answers(family, config, params, tokenizer, records, demos, template, spec, cfg, overflow)
        result = metrics_lib.squad_scores(preds, [r["answers"] for r in records])
        metrics = {m: result[m] for m in spec.metrics}
        base = majority_baseline(spec, task.splits.get("train") or [], cfg.split, records)
    else:
        if module.LM_KIND == "masked":
            scores = _masked_scores(family, config, params, tokenizer, spec, records, demos, template, cfg, overflow,
                                    scorer)
        else:
            scores = _loglikelihood_scores(family, config, params, tokenizer, spec, records, demos, template, cfg,
                                           overflow)
        enc = Encoded({"inputs": np.zeros((len(records), 1), np.int32)})
        metrics, _ = task_score(spec, cfg.split, records, enc, {"logits": scores})
        base = majority_baseline(spec, task.splits.get("train") or [], cfg.split, records)
    return {"task": spec.name, "split": cfg.split, **metrics, "main_metric": spec.main_metric, "shots": cfg.shots,
            "n": len(records), "seed": cfg.seed, "scorer": scorer,
            "normalize": cfg.normalize if scorer == "loglikelihood" else None, "template": template,
            "majority_baseline": base, **overflow.as_dict()}


__all__ = [
    "NORMALIZE",
    "SCORERS",
    "SEPARATOR",
    "InContextConfig",
    "answer_of",
    "candidates",
    "default_template",
    "demonstrations",
    "encode_pair",
    "evaluate_in_context",
    "fill",
    "split_template",
]

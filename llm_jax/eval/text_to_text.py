"""Text-to-text evaluation (T5 §2.4): decode a text for every input, map it back to a label, score the labels.

`TextPredictor` runs the family's decoder steps through the shared decoding loop (`llm_jax.generate`: greedy, or
beam search with `num_beams` > 1) over fixed-size batches — the last one padded with copies of its first row — so
one compiled search serves every split, and returns the decoded texts (special tokens left out, as transformers'
`skip_special_tokens`). `score_texts` maps each text back (`TextLabels.parse`): a text that is no label word, or no
number for a regression task, counts as wrong (label −1 / score −1.0, T5's postprocessors) and is counted in
`non_label_outputs`, which the metrics always report.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from llm_jax import generate as generate_lib
from llm_jax.data.features import pad_left
from llm_jax.data.tasks import TaskSpec, TextLabels
from llm_jax.eval import metrics as metrics_lib
from llm_jax.eval.predict import has_labels
from llm_jax.layers import check_ids

NON_LABEL_METRIC = "non_label_outputs"


class TextPredictor:
    """Jitted, batched decoding of a text-to-text model's outputs.

    Args:
      family / cfg: the model's family and Config (its decoder steps, `generate.decoder_for`).
      tokenizer: turns generated ids into text.
      batch_size: inputs per decoding call.
      max_new_tokens: generated tokens at most (the longest target, `</s>` included, is enough).
      num_beams: 1 = greedy; N > 1 = beam search (`GenerationConfig` semantics, transformers' `generate`).

    Raises:
      ValueError: a family without decoder steps, or bad decoding settings.
    """

    def __init__(self, family: str, cfg, tokenizer, batch_size: int, max_new_tokens: int, num_beams: int = 1):
        if batch_size < 1:
            raise ValueError(f"data.eval_batch_size={batch_size} must be ≥ 1.")
        self.decoder = generate_lib.decoder_for(family, cfg)
        self.config = generate_lib.GenerationConfig(max_new_tokens=max_new_tokens, num_beams=num_beams,
                                                    stop_token_ids=self.decoder.stop_token_ids).validate(
                                                        cfg.vocab_size)
        self.tokenizer, self.batch_size, self.cfg = tokenizer, batch_size, cfg

    def generate_ids(self, params, arrays: dict[str, np.ndarray]) -> list[list[int]]:
        """The generated ids of every row of `arrays` (`inputs`, `mask` `[N, S]`), up to and including the stop
        token.

        Raises:
          ValueError: input ids outside the model's vocabulary (checked here: under jit they would give NaN).
        """
        check_ids(arrays["inputs"], self.cfg.vocab_size, "token ids (model.vocab_size)")
        # The decoding loop takes left-padded prompts (`models/family.py`, "Decoder steps").
        rows = pad_left({"inputs": arrays["inputs"], "mask": arrays["mask"]})
        n, b = len(rows["inputs"]), self.batch_size
        out: list[list[int]] = []
        for start in range(0, n, b):
            x, m = rows["inputs"][start:start + b], rows["mask"][start:start + b]
            short = b - len(x)
            if short:  # pad the last batch with copies of its first row (their outputs are dropped)
                x, m = (np.concatenate([v, np.repeat(v[:1], short, 0)]) for v in (x, m))
            tokens, lengths, _ = jax.device_get(generate_lib.generate_tokens(
                self.decoder, self.config, params, x, m, jax.random.key(0)))
            out += [row[:k].tolist() for row, k in zip(np.asarray(tokens)[:b - short], np.asarray(lengths))]
        return out

    def __call__(self, params, arrays: dict[str, np.ndarray]) -> list[str]:
        """The decoded text of every row (special tokens left out, stripped)."""
        return [t.strip() for t in self.tokenizer.decode_batch(self.generate_ids(params, arrays),
                                                               skip_special_tokens=True)]


def score_texts(spec: TaskSpec, labels: TextLabels, split: str, records: list[dict[str, Any]],
                texts: list[str]) -> tuple[dict[str, float], list[dict]]:
    """Per-example predictions and the task's metrics from decoded texts, with `non_label_outputs` (the number of
    texts that are no label word / no number; always reported, also for a split without labels).

    Macro-F1 averages over the task's classes only (a non-label output is a miss for its example's class, not a
    class of its own).

    Returns:
      `(metrics, rows)`: metric name → value, and one JSON-able row per example (`prediction`: the label id or score,
      −1 when the text was no label; `prediction_text`; `is_label`; `label` when known).
    """
    if len(texts) != len(records):
        raise ValueError(f"{len(texts)} decoded texts for {len(records)} {split} records; give one text per record.")
    labelled = has_labels(spec, split, records)
    parsed = [labels.parse(t) for t in texts]
    rows = []
    for r, t, (label, ok) in zip(records, texts, parsed):
        row = {"idx": r["idx"], "prediction": label, "prediction_text": t, "is_label": ok}
        if ok and labels.kind == "classification":
            row["prediction_name"] = spec.label_names[label] if spec.label_names else labels.words[label]
        if labelled:
            row["label"] = r["label"]
        rows.append(row)
    non_label = sum(not ok for _, ok in parsed)
    if not labelled:
        return {NON_LABEL_METRIC: non_label}, rows
    gold = np.asarray([r["label"] for r in records], np.float64 if labels.kind == "regression" else np.int64)
    pred = np.asarray([p for p, _ in parsed], gold.dtype)
    scores = metrics_lib.compute(spec.metrics, gold, pred)
    if "macro_f1" in scores:
        scores["macro_f1"] = metrics_lib.f1_macro(gold, pred, spec.num_labels)
    return {**scores, NON_LABEL_METRIC: non_label}, rows


__all__ = ["NON_LABEL_METRIC", "TextPredictor", "score_texts"]

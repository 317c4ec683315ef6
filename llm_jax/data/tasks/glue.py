"""The nine GLUE tasks (Wang et al. 2019): Hub configs, fields, metrics, zero-shot prompts and verbalizers.

Read with `datasets.load_dataset` from the Hub copy `nyu-mll/glue` (network or the local Hugging Face cache). GLUE
hides its test labels: the Hub copy stores -1 there. That marker is turned into `label: None` here, at load time,
for the test splits only (`TaskSpec.test_labels=False` says so too), so that no code downstream has to know that
-1 means "hidden" — a regression score of -1.0 elsewhere is an ordinary score.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from llm_jax.data.tasks.base import TaskSpec, hub_dataset
from llm_jax.data.tasks.text import TextTemplate

# The Hub repository of the canonical GLUE copy (datasets ≥ 3 reads it as Parquet).
GLUE_DATASET = "nyu-mll/glue"


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """One GLUE task: its Hub config, its text fields (one or a pair), its spec, and its split names."""

    config: str  # the Hub config name
    fields: tuple[str, ...]
    spec: TaskSpec
    validation: str = "validation"
    test: str = "test"


# The paraphrase / similarity pairs, whose two texts have no inherent order: the "Semantic similarity" column of
# Radford et al. 2018, Table 4 (the rest of the pair tasks there are entailment-style).
SYMMETRIC = ("mrpc", "qqp", "stsb")


# Text to text (T5 §2.4 and App. D): `<task> <field>: <text> ...` with the Hub's field names in sorted order, as T5's
# `glue` preprocessor writes them (MNLI: hypothesis before premise); the targets are the label names (T5's are the
# same words), STS-B's score rounded to 0.2. The records keep the Hub's field order in text_a / text_b.
def _text(name: str, fields: tuple[str, ...]) -> TextTemplate:
    slots = dict(zip(fields, ("text_a", "text_b")))
    prefix = "mnli" if name.startswith("mnli") else name
    return TextTemplate(" ".join([prefix, *(f"{f}: {{{slots[f]}}}" for f in sorted(fields))]))


def _glue(name, fields, num_labels, labels, metrics, prompt="", verbalizers=(), description="", **splits):
    kind = "regression" if num_labels == 1 else "classification"
    spec = TaskSpec(name, kind, num_labels, labels, metrics, prompt, verbalizers, test_labels=False,
                    description=description, symmetric=name in SYMMETRIC, text=_text(name, fields))
    return GlueTask(splits.pop("config", name), fields, spec, **splits)


# Metrics as the GLUE paper reports them (Wang et al. 2019, Table 1): MCC for CoLA, F1 and accuracy for MRPC and
# QQP, Pearson/Spearman for STS-B, accuracy elsewhere. Prompts and verbalizers from LM-BFF (Gao et al. 2021, Table 1).
GLUE: dict[str, GlueTask] = {g.spec.name: g for g in (
    _glue("cola", ("sentence",), 2, ("unacceptable", "acceptable"), ("mcc", "accuracy"),
          "{text_a} This is {mask}.", ("incorrect", "correct"), "grammatical acceptability"),
    _glue("sst2", ("sentence",), 2, ("negative", "positive"), ("accuracy",),
          "{text_a} It was {mask}.", ("terrible", "great"), "movie review sentiment"),
    _glue("mrpc", ("sentence1", "sentence2"), 2, ("not_equivalent", "equivalent"), ("f1", "accuracy"),
          "{text_a} {mask}, {text_b}", ("no", "yes"), "paraphrase"),
    _glue("qqp", ("question1", "question2"), 2, ("not_duplicate", "duplicate"), ("f1", "accuracy"),
          "{text_a} {mask}, {text_b}", ("no", "yes"), "duplicate questions"),
    _glue("stsb", ("sentence1", "sentence2"), 1, (), ("pearson", "spearman", "mse"),
          description="semantic similarity 0–5 (regression)"),
    _glue("mnli", ("premise", "hypothesis"), 3, ("entailment", "neutral", "contradiction"), ("accuracy",),
          "{text_a} ? {mask}, {text_b}", ("yes", "maybe", "no"), "entailment (matched)",
          validation="validation_matched", test="test_matched"),
    _glue("mnli_mismatched", ("premise", "hypothesis"), 3, ("entailment", "neutral", "contradiction"),
          ("accuracy",), "{text_a} ? {mask}, {text_b}", ("yes", "maybe", "no"), "entailment (mismatched)",
          config="mnli", validation="validation_mismatched", test="test_mismatched"),
    _glue("qnli", ("question", "sentence"), 2, ("entailment", "not_entailment"), ("accuracy",),
          "{text_a} ? {mask}, {text_b}", ("yes", "no"), "question answering as entailment"),
    _glue("rte", ("sentence1", "sentence2"), 2, ("entailment", "not_entailment"), ("accuracy",),
          "{text_a} ? {mask}, {text_b}", ("yes", "no"), "textual entailment"),
    _glue("wnli", ("sentence1", "sentence2"), 2, ("not_entailment", "entailment"), ("accuracy",),
          "{text_a} ? {mask}, {text_b}", ("no", "yes"), "Winograd schema as entailment"),
)}


def glue_records(g: GlueTask, split: str) -> list[dict[str, Any]]:
    """The records of one split (`train`, `validation`, `test`) of a GLUE task.

    Raises:
      DatasetUnavailable: the Hub copy could not be loaded.
    """
    source = {"train": "train", "validation": g.validation, "test": g.test}[split]
    rows = hub_dataset(GLUE_DATASET, g.config, source)
    hidden = split == "test" and not g.spec.test_labels
    out = []
    for i, r in enumerate(rows):
        rec = {"idx": int(r.get("idx", i)), "text_a": r[g.fields[0]]}
        if len(g.fields) > 1:
            rec["text_b"] = r[g.fields[1]]
        if hidden:
            rec["label"] = None  # the Hub stores -1: GLUE keeps the real test labels on its server
        elif g.spec.kind == "regression":
            rec["label"] = float(r["label"])
        else:
            rec["label"] = int(r["label"])
        out.append(rec)
    return out


__all__ = ["GLUE", "GLUE_DATASET", "GlueTask", "glue_records"]

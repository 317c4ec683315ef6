"""Tasks as text to text (Raffel et al. 2020, T5 §2.4): an input with a task prefix, a target text, and the way
back from a generated text to a label.

"We cast all of the tasks we consider into a 'text-to-text' format — that is, a task where the model is fed some
text for context or conditioning and is then asked to produce some output text." A task's `TextTemplate` (in
`TaskSpec.text`, defined with the task: `bundled.py`, `glue.py`, and `text_template_for_fields` for local files)
says how:

* the input is a format string over the record fields (`text_a`, `text_b`), in the paper's style — the task's name,
  then each field's name and text: `cola sentence: {text_a}`, `stsb sentence1: {text_a} sentence2: {text_b}`,
  `mnli hypothesis: {text_b} premise: {text_a}` (T5's GLUE preprocessor writes the fields in sorted order; App. D);
* a class is written as its word (`targets`, default the task's label names — T5's GLUE targets are exactly the
  GLUE label names: `acceptable`, `not_entailment`, ...);
* a regression score is written rounded to the nearest `score_step` with one decimal (§2.4: "we round our target
  scores to the nearest increment of 0.2 and convert the result to a literal string representation of the number
  (e.g. the floating-point value 2.57 would be mapped to the string '2.6')", STS-B's 1–5 scores).

Back from text (`TextLabels.parse`): a generated text that is none of the label words — or, for regression, not a
number — is *not a label*. The paper counts such an output as wrong ("we treat it as incorrect", §2.4); here a
classification output that is not a label word gets the label −1 (wrong under every metric), and an unparsable
score gets −1.0, T5's `string_to_float` default. Evaluation reports how many outputs were not labels
(`non_label_outputs`). Words are compared as the tokenizer writes them (`TextLabels.build` round-trips each word
through the tokenizer), so a lower-casing or whitespace-normalising vocabulary still matches its own output.
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # why: base.py imports this module for TaskSpec.text
    from llm_jax.data.tasks.base import TaskSpec

# T5's `string_to_float(default=-1.)`: the score of a generated text that is not a number.
NON_NUMBER_SCORE = -1.0
# The label id of a generated text that is no label word: wrong under every classification metric.
NON_LABEL = -1
# Record fields a template may name.
FIELDS = ("text_a", "text_b")


@dataclasses.dataclass(frozen=True)
class TextTemplate:
    """How a task reads as text to text (see the module docstring).

    Attributes:
      input: a format string over `text_a` (and `text_b` for pairs), e.g. `"cola sentence: {text_a}"`.
      targets: one target word per label id; empty = the task's `label_names`.
      score_step: regression only: targets are scores rounded to the nearest multiple of this (T5: 0.2).
    """

    input: str
    targets: tuple[str, ...] = ()
    score_step: float = 0.2

    def __post_init__(self):
        names = [f for _, f, _, _ in string.Formatter().parse(self.input) if f is not None]
        unknown = [f for f in names if f not in FIELDS]
        if unknown or not names:
            raise ValueError(f"TextTemplate(input={self.input!r}) must name record fields among {FIELDS} (braces), "
                             f"and names {names}.")
        if not self.score_step > 0:
            raise ValueError(f"TextTemplate(score_step={self.score_step}) must be > 0 (T5: 0.2).")

    def render_input(self, record: dict[str, Any]) -> str:
        """The input text of a record."""
        return self.input.format(**{f: record.get(f, "") for f in FIELDS})

    def words(self, spec: TaskSpec) -> tuple[str, ...]:
        """The target word of each label id."""
        return self.targets or spec.label_names


def text_template_for_fields(name: str, fields: Sequence[str]) -> TextTemplate:
    """A template in the paper's style for a task with these text fields: `name field1: {text_a} field2: {text_b}`
    (local files: the task's configured `text_fields`)."""
    parts = [f"{field}: {{{slot}}}" for field, slot in zip(fields, FIELDS)]
    return TextTemplate(" ".join([name, *parts]).strip())


def format_score(value: float, step: float) -> str:
    """A score rounded to the nearest multiple of `step`, written with one decimal (T5's STS-B target:
    `round(x * 5) / 5` as a string with precision 1; 2.57 → '2.6')."""
    # Why `value * (1 / step)`: T5 multiplies by 5 (exact) rather than dividing by 0.2 (inexact); Python's round is
    # half to even, as `tf.round`.
    per_unit = 1.0 / step
    return f"{round(value * per_unit) / per_unit:.1f}"


@dataclasses.dataclass(frozen=True)
class TextLabels:
    """A task's target words as the tokenizer writes them, and the map back (build with `TextLabels.build`).

    Attributes:
      kind: `classification` or `regression`.
      words: the label words (classification), as given.
      normalized: the same words after a round trip through the tokenizer, which is how generated text comes back.
      score_step: regression: the rounding step of the targets.
    """

    kind: str
    words: tuple[str, ...]
    normalized: tuple[str, ...]
    score_step: float

    @classmethod
    def build(cls, spec: TaskSpec, normalize) -> "TextLabels":
        """The labels of `spec` under `normalize(text) -> text` (the tokenizer's encode → decode).

        Raises:
          ValueError: a task kind text-to-text does not cover, a task without a template, too few target words,
            or two words the tokenizer writes alike (a generated text could not tell them apart).
        """
        if spec.kind not in ("classification", "regression"):
            raise ValueError(f"Text-to-text fine-tuning covers classification and regression tasks; {spec.name} is "
                             f"{spec.kind}. Set data.text_to_text=False to fine-tune a task head instead.")
        if spec.text is None:
            raise ValueError(f"Task {spec.name} has no text-to-text template (TaskSpec.text); give it one, or set "
                             "data.text_to_text=False.")
        if spec.kind == "regression":
            return cls("regression", (), (), spec.text.score_step)
        words = spec.text.words(spec)
        if len(words) != spec.num_labels:
            raise ValueError(f"Task {spec.name} has {spec.num_labels} labels but its text template gives "
                             f"{len(words)} target words {list(words)}; give one word per label.")
        normalized = tuple(normalize(w).strip() for w in words)
        dupes = sorted({w for w in normalized if normalized.count(w) > 1 or not w})
        if dupes:
            raise ValueError(f"The target words {list(words)} of {spec.name} read alike (or empty) after the "
                             f"tokenizer: {dupes}; the vocabulary cannot write them apart. Use other words.")
        return cls("classification", tuple(words), normalized, spec.text.score_step)

    def target(self, label) -> str:
        """The target text of a label (an id, or a score)."""
        if self.kind == "regression":
            return format_score(float(label), self.score_step)
        return self.words[int(label)]

    def parse(self, text: str) -> tuple[float | int, bool]:
        """`(label, is_label)` of a generated text: the label id whose word it is (or the score it spells), and
        whether it was one; otherwise `(NON_LABEL, False)` / `(NON_NUMBER_SCORE, False)`."""
        text = text.strip()
        if self.kind == "regression":
            try:
                value = float(text)
            except ValueError:
                return NON_NUMBER_SCORE, False
            return (value, True) if math.isfinite(value) else (NON_NUMBER_SCORE, False)
        if text in self.normalized:
            return self.normalized.index(text), True
        return NON_LABEL, False


__all__ = ["FIELDS", "NON_LABEL", "NON_NUMBER_SCORE", "TextLabels", "TextTemplate", "format_score",
           "text_template_for_fields"]

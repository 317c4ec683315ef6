"""The bundled WordNet tasks (offline): `wordnet-supersense`, `wordnet-gloss`, `wordnet-wic`.

Their data ship with the package (`bundled/tasks/<name>/{train,validation,test}.jsonl.xz`, baselines in
`bundled/README.md`). The target word of the pair tasks is marked in the text with double quotation marks
(GlossBERT's weak supervision, Huang et al. 2019, §3.2); see `llm_jax.data.tasks`.
"""

from __future__ import annotations

import json
from typing import Any

from llm_jax.data import files
from llm_jax.data.corpus import bundled_dir
from llm_jax.data.tasks import fields
from llm_jax.data.tasks.base import TaskSpec
from llm_jax.data.tasks.text import TextTemplate

# Pair order: `wordnet-wic` asks whether two usage examples share a sense, a symmetric relation (swapping them
# never changes the label), so it is a similarity task (`symmetric=True`); `wordnet-gloss` pairs a sentence with a
# definition, an asymmetric, entailment-style pair.
# Zero-shot prompts: the WordNet corpus the models are pretrained on writes definitions as "lemma: definition."
# and the prompts reuse that shape; the verbalizers are common words, so that even a small trained vocabulary
# has most of them as single pieces (`llm_jax.eval.cloze` says which are not).
# Text to text (T5 §2.4, `tasks/text.py`): a task prefix and field names in the paper's style; supersense targets
# are its label names (`noun.food`); the two sense pairs answer `false` / `true`, as T5's SuperGLUE WiC targets.
# has most of them as single pieces (`llm_jax.eval.cloze` says which are not). The in-context templates (causal and
# encoder-decoder models, `llm_jax.eval.in_context`) put the same words last, where a continuation is scored.
BUNDLED: dict[str, TaskSpec] = {
    "wordnet-supersense": TaskSpec(
        "wordnet-supersense", "classification", 10,
        ("noun.act", "noun.animal", "noun.artifact", "noun.body", "noun.cognition", "noun.communication",
         "noun.food", "noun.location", "noun.person", "noun.plant"),
        ("accuracy", "macro_f1"),
        prompt="a kind of {mask}: {text_a}.",
        verbalizers=("act", "animal", "device", "body", "idea", "message", "food", "place", "person", "plant"),
        description="noun supersense of a WordNet definition, 10 balanced classes",
        text=TextTemplate("supersense definition: {text_a}"),
        template="Definition: {text_a}.\nA kind of: {answer}"),
    "wordnet-gloss": TaskSpec(
        "wordnet-gloss", "classification", 2, ("other sense", "this sense"), ("accuracy", "f1"),
        prompt="{text_a}? {mask}, {text_b}", verbalizers=("no", "yes"),
        description="is the definition the sense of the marked word in the sentence?",
        text=TextTemplate("gloss sentence: {text_a} definition: {text_b}", ("false", "true")),
        template="Sentence: {text_a}\nDefinition: {text_b}\nIs that the sense of the marked word? {answer}"),
    "wordnet-wic": TaskSpec(
        "wordnet-wic", "classification", 2, ("different sense", "same sense"), ("accuracy", "f1"),
        prompt="{text_a}? {mask}, {text_b}", verbalizers=("no", "yes"),
        description="is the marked word used in the same sense in both sentences?", symmetric=True,
        text=TextTemplate("wic sentence1: {text_a} sentence2: {text_b}", ("false", "true")),
        template="1: {text_a}\n2: {text_b}\nIs the marked word used in the same sense? {answer}"),
}

_REINSTALL = "reinstall llm_jax (pip install --force-reinstall llm_jax) so its package data is copied intact"


def _mark(text: str, start: int, end: int, enabled: bool) -> str:
    """Puts double quotation marks around `text[start:end]` (GlossBERT's weak supervision)."""
    if not enabled:
        return text
    if not 0 <= start < end <= len(text):
        raise ValueError(f"Span [{start}, {end}) does not lie inside the sentence {text!r}; the task file is damaged.")
    return f'{text[:start]}"{text[start:end]}"{text[end:]}'


def _record(name: str, r: dict[str, Any], mark: bool) -> dict[str, Any]:
    def text(field: str) -> str:  # a null would otherwise reach the model as the word "None"
        return fields.text(r.get(field), "record", field)

    if name == "wordnet-supersense":
        rec = {"text_a": text("text")}
    elif name == "wordnet-gloss":
        rec = {"text_a": _mark(text("sentence"), r["start"], r["end"], mark),
               "text_b": f"{text('word').replace('_', ' ')}: {text('gloss')}" if mark else text("gloss")}
    else:
        rec = {"text_a": _mark(text("sentence1"), r["start1"], r["end1"], mark),
               "text_b": _mark(text("sentence2"), r["start2"], r["end2"], mark)}
    return {"idx": fields.integer(r.get("idx"), "record", "idx"), **rec,
            "label": fields.integer(r.get("label"), "record", "label")}


def bundled_records(name: str, split: str, mark: bool) -> list[dict[str, Any]]:
    """The records of one split of a bundled task.

    Raises:
      FileNotFoundError / ValueError: a missing or damaged package file (the message says to reinstall).
    """
    path = bundled_dir() / "tasks" / name / f"{split}.jsonl.xz"
    files.check_file(path, "The bundled task file", missing_hint=f"the installation is incomplete; {_REINSTALL}")
    out, n = [], 0
    # The files are ours and checked by the tests: a failure here means a damaged installation.
    try:
        with files.open_binary(path) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    out.append(_record(name, json.loads(line), mark))
    except files.DECOMPRESSION_ERRORS as err:
        raise ValueError(f"The bundled task file {path} is damaged after line {n} ({files.one_line(err)}); "
                         f"{_REINSTALL}.") from err
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"The bundled task file {path} is damaged at line {n} ({files.one_line(err)}); "
                         f"{_REINSTALL}.") from err
    return out


__all__ = ["BUNDLED", "bundled_records"]

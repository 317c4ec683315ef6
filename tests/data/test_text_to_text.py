"""Tasks as text to text (T5 §2.4): templates, targets, the way back from text, the arrays, the scores."""

import dataclasses

import numpy as np
import pytest
import tokenizers

from llm_jax.data.tasks import BUNDLED, GLUE, TaskSpec, TextLabels, TextTemplate, bundled_records
from llm_jax.data.tasks.text import NON_LABEL, NON_NUMBER_SCORE, format_score, text_template_for_fields
from llm_jax.data.text_to_text import encode_text_to_text, longest_target, normalizer, text_labels
from llm_jax.eval.text_to_text import score_texts


@pytest.fixture(scope="module")
def tok():
    """A word-level tokenizer that lower-cases, with T5's `A </s>` template (pad 0, eos 1, unk 2)."""
    words = ["<pad>", "</s>", "<unk>", "cola", "sentence", ":", "the", "cat", "sat", "acceptable", "unacceptable",
             "noun", ".", "act", "food", "true", "false", "2", "3", "0", "6", "8", "-", "1", "5"]
    t = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    t.normalizer = tokenizers.normalizers.Lowercase()
    t.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([tokenizers.pre_tokenizers.Whitespace(),
                                                          tokenizers.pre_tokenizers.Digits(individual_digits=True)])
    t.decoder = tokenizers.decoders.WordPiece(prefix="##", cleanup=False)
    t.post_processor = tokenizers.processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    t.add_special_tokens(["<pad>", "</s>", "<unk>"])
    return t


def test_glue_inputs_in_the_papers_style():
    record = {"text_a": "A", "text_b": "B"}
    assert GLUE["cola"].spec.text.render_input(record) == "cola sentence: A"
    assert GLUE["stsb"].spec.text.render_input(record) == "stsb sentence1: A sentence2: B"
    # T5's GLUE preprocessor writes the fields sorted by name: MNLI's hypothesis (text_b) before its premise.
    assert GLUE["mnli"].spec.text.render_input(record) == "mnli hypothesis: B premise: A"
    assert GLUE["mnli_mismatched"].spec.text.render_input(record) == "mnli hypothesis: B premise: A"
    assert GLUE["qnli"].spec.text.render_input(record) == "qnli question: A sentence: B"
    assert GLUE["qqp"].spec.text.render_input(record) == "qqp question1: A question2: B"
    # Every bundled and GLUE task has a template; class targets are its label names unless the template says.
    for spec in [*BUNDLED.values(), *(g.spec for g in GLUE.values())]:
        assert spec.text is not None, spec.name
        if spec.kind == "classification":
            assert len(spec.text.words(spec)) == spec.num_labels
    assert BUNDLED["wordnet-supersense"].text.words(BUNDLED["wordnet-supersense"])[6] == "noun.food"
    assert BUNDLED["wordnet-wic"].text.words(BUNDLED["wordnet-wic"]) == ("false", "true")
    assert text_template_for_fields("", ("question", "passage")).input == "question: {text_a} passage: {text_b}"


def test_stsb_scores_round_to_a_fifth_with_one_decimal():
    # T5 §2.4: 2.57 → '2.6'; tf.round is half to even (x·5 = 2.5 → 2 → 0.4, 3.5 → 4 → 0.8).
    assert [format_score(x, 0.2) for x in (2.57, 0.0, 5.0, 0.5, 0.7, 3.1, 4.91)] == \
        ["2.6", "0.0", "5.0", "0.4", "0.8", "3.2", "5.0"]


def test_text_back_to_labels(tok):
    spec = GLUE["cola"].spec
    labels = text_labels(spec, tok)
    assert labels.normalized == ("unacceptable", "acceptable")
    assert labels.parse("acceptable") == (1, True) and labels.parse(" Acceptable ".lower()) == (1, True)
    assert labels.parse("acceptable acceptable") == (NON_LABEL, False) and labels.parse("") == (NON_LABEL, False)
    stsb = text_labels(GLUE["stsb"].spec, tok)
    assert stsb.target(2.57) == "2.6" and stsb.parse("3.8") == (3.8, True)
    assert stsb.parse("cat") == (NON_NUMBER_SCORE, False) and stsb.parse("nan") == (NON_NUMBER_SCORE, False)
    # Words the tokenizer writes alike could not be told apart after decoding.
    same = TaskSpec("x", "classification", 2, ("Cat", "cat"), text=TextTemplate("x: {text_a}"))
    with pytest.raises(ValueError, match="read alike"):
        text_labels(same, tok)
    with pytest.raises(ValueError, match="covers classification and regression"):
        TextLabels.build(TaskSpec("q", "span", 2), normalizer(tok))
    with pytest.raises(ValueError, match="no text-to-text template"):
        TextLabels.build(dataclasses.replace(spec, text=None), normalizer(tok))
    with pytest.raises(ValueError, match="must name record fields"):
        TextTemplate("no fields")


def test_arrays_end_targets_with_eos(tok):
    spec = GLUE["cola"].spec
    labels = text_labels(spec, tok)
    records = [{"idx": 0, "text_a": "The cat sat", "label": 1}, {"idx": 1, "text_a": "cat the", "label": 0},
               {"idx": 2, "text_a": "the cat", "label": None}]
    assert longest_target(tok, labels, records) == 2  # one word + </s>
    enc = encode_text_to_text(tok, spec, labels, records, seq_len=8, target_len=3, roles={"pad": "<pad>"})
    ids = {w: tok.token_to_id(w) for w in ("cola", "sentence", ":", "the", "cat", "sat", "acceptable")}
    assert enc.arrays["inputs"][0].tolist() == [ids["cola"], ids["sentence"], ids[":"], ids["the"], ids["cat"],
                                                ids["sat"], 1, 0]
    assert enc.arrays["mask"][0].tolist() == [True] * 7 + [False]
    assert enc.arrays["targets"][0].tolist() == [ids["acceptable"], 1, 0]
    assert enc.arrays["target_weights"][0].tolist() == [1.0, 1.0, 0.0]
    assert enc.arrays["labels"].tolist() == [1, 0, 0]  # a hidden label: placeholder 0
    stsb = GLUE["stsb"].spec
    enc = encode_text_to_text(tok, stsb, text_labels(stsb, tok), [{"idx": 0, "text_a": "a", "text_b": "b",
                                                                   "label": 2.57}], 8, 6, {"pad": "<pad>"})
    assert tok.decode(enc.arrays["targets"][0].tolist()) == "2 . 6"  # '2.6' + </s> (a word-level vocabulary)
    assert enc.arrays["labels"].dtype == np.float32


def test_scores_count_non_label_outputs():
    spec = BUNDLED["wordnet-supersense"]
    labels = TextLabels.build(spec, lambda w: w)
    records = [{"idx": i, "label": y} for i, y in enumerate([0, 1, 2, 6])]
    metrics, rows = score_texts(spec, labels, "test", records, ["noun.act", "noun.plant", "noun.artifact", "nuon"])
    assert metrics["accuracy"] == 0.5 and metrics["non_label_outputs"] == 1
    # Macro-F1 over the task's 10 classes: a non-label output is a miss, not an eleventh class.
    f1 = {0: 1.0, 1: 0.0, 2: 1.0, 6: 0.0, 9: 0.0}
    assert metrics["macro_f1"] == pytest.approx(sum(f1.values()) / 10)
    assert rows[3] == {"idx": 3, "prediction": -1, "prediction_text": "nuon", "is_label": False, "label": 6}
    assert rows[1]["prediction_name"] == "noun.plant" and rows[1]["is_label"]
    hidden = dataclasses.replace(spec, test_labels=False)
    assert score_texts(hidden, labels, "test", records, ["x", "noun.act", "y", "z"])[0] == {"non_label_outputs": 3}
    stsb = GLUE["stsb"].spec
    m, rows = score_texts(stsb, TextLabels.build(stsb, lambda w: w), "validation",
                          [{"idx": i, "label": y} for i, y in enumerate([1.0, 2.0, 3.0])], ["1.2", "two", "3.0"])
    assert m["non_label_outputs"] == 1 and rows[1]["prediction"] == -1.0
    assert m["mse"] == pytest.approx(((1.2 - 1.0) ** 2 + 9.0 + 0.0) / 3)


def test_bundled_records_render():
    spec = BUNDLED["wordnet-wic"]
    record = bundled_records("wordnet-wic", "validation", True)[0]
    text = spec.text.render_input(record)
    assert text.startswith("wic sentence1: ") and " sentence2: " in text and text.count('"') == 4

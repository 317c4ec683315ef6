"""Tasks: bundled specs and records, local files, SQuAD layout, few-shot subsets, and encoding with the template."""

import json

import numpy as np
import pytest

from llm_jax.data import features, tasks
from llm_jax.data.tasks import TaskConfig


@pytest.fixture(scope="module")
def bundled():
    return {name: tasks.load_task(TaskConfig(name=name)) for name in tasks.BUNDLED}


def test_bundled_tasks_match_their_meta(bundled):
    for name, task in bundled.items():
        meta = json.loads((tasks.bundled_dir() / "tasks" / name / "meta.json").read_text())
        assert {s: len(r) for s, r in task.splits.items()} == meta["counts"]
        assert task.spec.num_labels == len(meta["labels"])
        for split, counts in meta["label_counts"].items():
            got = np.bincount(tasks.labels_of(task.splits[split]), minlength=task.spec.num_labels)
            assert got.tolist() == [counts[str(i)] for i in range(task.spec.num_labels)]
    assert bundled["wordnet-supersense"].spec.label_names[6] == "noun.food"
    assert "text_b" not in bundled["wordnet-supersense"].splits["train"][0]


def test_target_words_are_marked_in_pair_tasks(bundled):
    gloss = bundled["wordnet-gloss"].splits["train"][100]
    # {"word": "acceptance", "sentence": "her acceptance of the gift encouraged him", "start": 4, "end": 14, ...}
    assert gloss["text_a"] == 'her "acceptance" of the gift encouraged him'
    assert gloss["text_b"] == "acceptance: the act of accepting with approval; favorable reception"
    wic = bundled["wordnet-wic"].splits["train"][0]
    assert wic["text_a"] == '"abject" poverty' and wic["text_b"] == 'the most "abject" slaves joined in the revolt'
    plain = tasks.load_task(TaskConfig(name="wordnet-wic", mark_spans=False)).splits["train"][0]
    assert plain["text_a"] == "abject poverty"


def test_few_shot_subset_is_class_balanced_and_seed_determined():
    labels = np.repeat(np.arange(10), [50, 60, 70, 80, 90, 100, 110, 120, 130, 140])  # imbalanced
    a = tasks.few_shot_subset(labels, len(labels), 64, seed=3)
    assert len(a) == len(set(a.tolist())) == 64
    counts = np.bincount(labels[a], minlength=10)
    assert counts.max() - counts.min() <= 1  # 64 = 6 × 10 + 4: four classes get a seventh example
    np.testing.assert_array_equal(a, tasks.few_shot_subset(labels, len(labels), 64, seed=3))
    assert not np.array_equal(a, tasks.few_shot_subset(labels, len(labels), 64, seed=4))
    # 16 over 10 classes: every class 1 or 2 examples.
    b = tasks.few_shot_subset(labels, len(labels), 16, seed=0)
    assert sorted(set(np.bincount(labels[b], minlength=10).tolist())) == [1, 2]
    # A class smaller than its share gives everything it has; the shortfall comes from the others.
    labels = np.repeat(np.arange(10), [50, 60, 70, 80, 90, 100, 5, 120, 130, 140])
    c = tasks.few_shot_subset(labels, len(labels), 200, seed=0)
    cc = np.bincount(labels[c], minlength=10)
    assert len(c) == 200 and cc[6] == 5 and cc[np.arange(10) != 6].min() >= 20
    np.testing.assert_array_equal(tasks.few_shot_subset(labels, len(labels), 10_000, 0), np.arange(len(labels)))
    with pytest.raises(ValueError, match="k ≥ 1"):
        tasks.few_shot_subset(labels, len(labels), 0, 0)


def test_local_jsonl_and_csv_tasks(tmp_path):
    rows = [{"sentence": f"text {i}", "other": f"pair {i}", "label": ["neg", "pos"][i % 2]} for i in range(6)]
    for split in ("train", "dev"):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = TaskConfig(name="local", train_file=str(tmp_path / "train.jsonl"), validation_file=str(tmp_path / "dev.jsonl"),
                     text_fields="sentence,other", metrics="f1,accuracy")
    task = tasks.load_task(cfg)
    assert task.spec.label_names == ("neg", "pos") and task.spec.main_metric == "f1"
    assert task.splits["validation"][1] == {"idx": 1, "text_a": "text 1", "text_b": "pair 1", "label": 1}
    (tmp_path / "train.csv").write_text("text,score\nhello,0.5\nworld,2.0\n")
    reg = tasks.load_task(TaskConfig(name="local", kind="regression", train_file=str(tmp_path / "train.csv"),
                                     validation_file=str(tmp_path / "train.csv"), label_field="score"))
    assert reg.spec.kind == "regression" and reg.splits["train"][1]["label"] == 2.0
    with pytest.raises(ValueError, match="no field.*sentence2"):
        tasks.load_task(TaskConfig(name="local", train_file=str(tmp_path / "train.jsonl"),
                                   validation_file=str(tmp_path / "dev.jsonl"), text_fields="sentence,sentence2"))
    with pytest.raises(ValueError, match="Unknown task 'glu'.*wordnet-wic"):
        tasks.load_task(TaskConfig(name="glu"))


def test_glue_offline_says_how_to_get_the_data(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert tasks.GLUE["stsb"].spec.kind == "regression" and tasks.GLUE["cola"].spec.main_metric == "mcc"
    assert len({g for g in tasks.GLUE}) == 10  # nine tasks, MNLI with both validation sets
    with pytest.raises(tasks.DatasetUnavailable, match="network access or an earlier download"):
        tasks.load_task(TaskConfig(name="glue/rte"))


SQUAD = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{
    "context": "The Eiffel Tower was completed in 1889 in Paris. It is made of wrought iron.",
    "qas": [{"id": "q1", "question": "When was the tower completed?", "answers": [{"text": "1889", "answer_start": 34}]},
            {"id": "q2", "question": "What is it made of?", "answers": [{"text": "wrought iron", "answer_start": 62}]},
            {"id": "q3", "question": "Who painted it?", "answers": [], "is_impossible": True,
             "plausible_answers": [{"text": "Paris", "answer_start": 42}]}]}]}]}


def test_squad_layout_and_span_labels(tmp_path, wordpiece_tok):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(SQUAD))
    records = tasks.read_squad_json(path)
    assert [r["answers"] for r in records] == [["1889"], ["wrought iron"], []]
    task = tasks.load_task(TaskConfig(name="squad_v2", train_file=str(path), validation_file=str(path)))
    assert task.spec.unanswerable and task.spec.metrics == ("f1", "exact_match")
    # A 24-token window with 8 tokens of overlap: the context is split; every answer lies in some window.
    enc = features.encode("span", wordpiece_tok, records, 24, doc_stride=8)
    spans = enc.spans
    assert len(enc) > len(records)
    found = {}
    for f, i in enumerate(spans.example_index.tolist()):
        s, e = int(spans.arrays["start_positions"][f]), int(spans.arrays["end_positions"][f])
        if s:
            found[i] = records[i]["context"][spans.offsets[f][s][0]:spans.offsets[f][e][1]]
    assert found == {0: "1889", 1: "wrought iron"}
    # Oracle logits recover the answers; the unanswerable one gets "".
    n, t = enc.arrays["inputs"].shape
    start, end = np.full((n, t), -9.0), np.full((n, t), -9.0)
    start[np.arange(n), spans.arrays["start_positions"]] = 9
    end[np.arange(n), spans.arrays["end_positions"]] = 9
    answers = features.best_spans(spans, start, end, [r["context"] for r in records], allow_null=True)
    assert answers == ["1889", "wrought iron", ""]


def test_pair_encoding_uses_the_template_and_truncates(wordpiece_tok):
    records = [{"text_a": "the cat sat", "text_b": "on the mat", "label": 1},
               {"text_a": "word " * 40, "text_b": "short", "label": 0}]
    out = features.encode("classification", wordpiece_tok, records, 16).arrays
    cls, sep = wordpiece_tok.token_to_id("[CLS]"), wordpiece_tok.token_to_id("[SEP]")
    row = out["inputs"][0][out["mask"][0]].tolist()
    assert row[0] == cls and row.count(sep) == 2 and row[-1] == sep
    seg = out["segment_ids"][0][out["mask"][0]].tolist()
    assert seg == [0] * (row.index(sep) + 1) + [1] * (len(row) - row.index(sep) - 1)
    assert out["mask"][1].all() and out["inputs"].shape == (2, 16)  # truncated longest-first to 16
    assert features.encode("classification", wordpiece_tok, records, 16, type_vocab_size=1).arrays[
        "segment_ids"].max() == 0
    tags = [{"tokens": ["unbelievably", "good"], "label": [2, 1]}]
    tok_out = features.encode("token_classification", wordpiece_tok, tags, 12).arrays
    w = tok_out["label_weights"][0]
    assert w.sum() == 2 and w[0] == 0 and w[1] == 1  # [CLS] unlabelled, first piece labelled
    assert tok_out["labels"][0][w > 0].tolist() == [2, 1]
    mc = [{"context": "pick one", "choices": ["a", "b", "c"], "label": 2}]
    assert features.encode("multiple_choice", wordpiece_tok, mc, 10).arrays["inputs"].shape == (1, 3, 10)

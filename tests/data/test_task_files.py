"""Task files people get wrong: missing or null values, unreadable files, hidden test labels (local and GLUE)."""

import gzip
import json
import logging
import lzma

import numpy as np
import pytest

from llm_jax.data import features
from llm_jax.data.tasks import TaskConfig, glue, load_task, read_squad_json
from llm_jax.eval import predict


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _load(train, validation=None, **kw):
    return load_task(TaskConfig(name="local", train_file=str(train), validation_file=str(validation or train), **kw))


GOOD = {"a": "first", "b": "second", "label": 1}

# ------------------------------------------------------------------------------------ missing values


@pytest.mark.parametrize("field", ["a", "b", "label"])
@pytest.mark.parametrize("how", ["absent", "null"])
def test_a_missing_value_in_a_pair_task_is_refused_never_the_text_none(tmp_path, field, how):
    bad = {k: v for k, v in GOOD.items() if k != field} if how == "absent" else {**GOOD, field: None}
    path = _jsonl(tmp_path / "pairs.jsonl", [GOOD, {**GOOD, "label": 0}, bad])
    with pytest.raises(ValueError, match=f"pairs.jsonl row 3: field '{field}' is missing or null") as e:
        _load(path, text_fields="a,b")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("row, field", [("hello,", "label"), (",1", "text"), ("hello", "label")])
def test_an_empty_csv_cell_or_short_row_is_missing(tmp_path, row, field):
    path = tmp_path / "t.csv"
    path.write_text(f"text,label\nfine,0\nalso fine,1\n{row}\n")
    with pytest.raises(ValueError, match=f"t.csv row 3: field '{field}' is missing or null"):
        _load(path)


def test_csv_text_is_read_as_written(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label,\nNA,0,\nNone,1,\n007,0,\n1.50,1,\n")  # pandas: NA/None missing, 007 → 7
    assert [r["text_a"] for r in _load(path).splits["train"]] == ["NA", "None", "007", "1.50"]


KINDS = {  # kind: (good row, settings, field to blank)
    "token_classification": ({"tokens": ["a", "b"], "tags": ["O", "B"]},
                             {"text_fields": "tokens", "label_field": "tags"}, "tokens"),
    "token_tag": ({"tokens": ["a", "b"], "tags": ["O", "B"]},
                  {"kind": "token_classification", "text_fields": "tokens", "label_field": "tags"}, "tags"),
    "multiple_choice": ({"context": "c", "choices": ["x", "y"], "label": 0},
                        {"text_fields": "context"}, "choices"),
    "multiple_choice_label": ({"context": "c", "choices": ["x", "y"], "label": 0},
                              {"kind": "multiple_choice", "text_fields": "context"}, "label"),
    "regression": ({"text": "t", "label": 0.5}, {}, "label"),
    "span": ({"question": "q", "context": "c", "answers": {"text": ["c"], "answer_start": [0]}},
             {"text_fields": "question,context"}, "question"),
}


@pytest.mark.parametrize("case", list(KINDS))
def test_every_kind_refuses_a_null_in_a_used_field(tmp_path, case):
    good, settings, field = KINDS[case]
    settings = {"kind": case, **settings}
    path = _jsonl(tmp_path / "k.jsonl", [good, {**good, field: None}])
    with pytest.raises(ValueError, match=f"k.jsonl row 2: field '{field}' is missing or null"):
        _load(path, **settings)


def test_a_null_inside_a_list_is_refused(tmp_path):
    path = _jsonl(tmp_path / "k.jsonl", [{"tokens": ["a", None], "tags": ["O", "B"]}])
    with pytest.raises(ValueError, match="k.jsonl row 1, item 1: field 'tokens' is missing or null"):
        _load(path, kind="token_classification", text_fields="tokens", label_field="tags")


def test_a_test_file_without_labels_is_read_as_hidden(tmp_path, caplog):
    train = _jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "neg"}, {"text": "b", "label": "pos"}])
    test = _jsonl(tmp_path / "test.jsonl", [{"text": "c"}, {"text": "d", "label": None}])
    with caplog.at_level(logging.WARNING):
        task = load_task(TaskConfig(name="local", train_file=train, validation_file=train, test_file=test))
    assert not task.spec.test_labels and [r["label"] for r in task.splits["test"]] == [None, None]
    assert "test.jsonl has no 'label' values in its 2 rows" in caplog.text
    partly = _jsonl(tmp_path / "partly.jsonl", [{"text": "c", "label": "pos"}, {"text": "d"}])
    with pytest.raises(ValueError, match="partly.jsonl row 2: field 'label' is missing or null"):
        load_task(TaskConfig(name="local", train_file=train, validation_file=train, test_file=partly))
    with pytest.raises(ValueError, match="train.jsonl row 2: field 'label' is missing or null"):  # never in train
        _load(_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "neg"}, {"text": "b"}]))


def test_hidden_labels_are_encoded_and_scored_without_metrics(tmp_path, wordpiece_tok):
    train = _jsonl(tmp_path / "train.jsonl", [{"text": "a b", "label": 0}, {"text": "c", "label": 1}])
    test = _jsonl(tmp_path / "test.jsonl", [{"text": "c d"}, {"text": "e"}])
    task = load_task(TaskConfig(name="local", train_file=train, validation_file=train, test_file=test))
    enc = features.encode("classification", wordpiece_tok, task.splits["test"], 8)
    outputs = {"logits": np.array([[0.0, 1.0], [2.0, 0.0]])}
    metrics, rows = predict.score(task.spec, "test", task.splits["test"], enc, outputs)
    assert metrics == {} and [r["prediction"] for r in rows] == [1, 0] and "label" not in rows[0]
    assert predict.majority_baseline(task.spec, task.splits["train"], "test", task.splits["test"]) is None


def test_glue_test_labels_are_marked_hidden_at_load_time(monkeypatch):
    def fake_hub(path, config, split):
        hidden = split.startswith("test")
        return [{"sentence1": f"s{i}", "sentence2": f"t{i}", "label": -1 if hidden else -1.0 + i, "idx": i}
                for i in range(3)]

    monkeypatch.setattr(glue, "hub_dataset", fake_hub)
    task = load_task(TaskConfig(name="glue/stsb"))
    assert [r["label"] for r in task.splits["test"]] == [None, None, None]
    # -1.0 is an ordinary STS-B score outside the test split.
    assert [r["label"] for r in task.splits["validation"]] == [-1.0, 0.0, 1.0]
    assert predict.has_labels(task.spec, "validation", task.splits["validation"])
    assert not predict.has_labels(task.spec, "test", task.splits["test"])


# ----------------------------------------------------------------------------------- unreadable files


def _truncated_xz(path):
    data = lzma.compress("".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n" for i in range(500)).encode())
    path.write_bytes(data[: len(data) // 2])


BROKEN = {  # file name: (how to write it, what the message says)
    "cut.jsonl.xz": (_truncated_xz, "truncated or damaged"),
    "bad.jsonl": (lambda p: p.write_text('{"text": "a", "label": 0}\n{"text": "b", label: 1}\n'),
                  r"line 2 is not valid JSON.*fix or remove that line"),
    "bad.json": (lambda p: p.write_text('[{"text": "a", "label": 0},\n {"text": "b" "label": 1}]'),
                 r"line 2, column \d+ is not valid JSON"),
    "latin1.jsonl": (lambda p: p.write_bytes(b'{"text": "a", "label": 0}\n{"text": "caf\xe9", "label": 1}\n'),
                     r"line 2 is not valid UTF-8.*save the file as UTF-8"),
    "fields.csv": (lambda p: p.write_text("text,label\na,0\nb, c,1\n"), r"line 3 has 3 fields but the header has 2"),
    "quote.csv": (lambda p: p.write_text('text,label\na,0\n"b,1\nc,0\n'),
                  r"record starting on line 3 is not valid CSV"),
    "header.csv": (lambda p: p.write_text("text,label\n"), r"it has a header but no rows"),
    "blank.jsonl": (lambda p: p.write_text("\n \n"), r"it holds only blank lines"),
    "empty.jsonl": (lambda p: p.write_text(""), r"is empty \(0 bytes\)"),
    "folder.jsonl": (lambda p: p.mkdir(), r"is a folder, not a file; name a file inside it"),
    "what.parquet": (lambda p: p.write_text("x"), r"Cannot tell the format"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_an_unreadable_task_file_gets_one_line_naming_it(tmp_path, name):
    write, message = BROKEN[name]
    path = tmp_path / name
    write(path)
    with pytest.raises(ValueError, match=message) as e:
        _load(path)
    assert name in str(e.value) and "\n" not in str(e.value)


def test_a_missing_task_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Task file .*nope.jsonl does not exist \(working directory"):
        _load(tmp_path / "nope.jsonl")


def _squad(qa):
    return {"data": [{"paragraphs": [{"context": "Paris is in France.", "qas": [qa]}]}]}


GOOD_QA = {"id": "q1", "question": "Where?", "answers": [{"text": "France", "answer_start": 12}]}


@pytest.mark.parametrize("qa, message", [
    ({k: v for k, v in GOOD_QA.items() if k != "question"}, r"qas\[0\]: field 'question' is missing or null"),
    ({**GOOD_QA, "id": None}, r"qas\[0\]: field 'id' is missing or null"),
    ({**GOOD_QA, "answers": [{"text": None, "answer_start": 12}]}, r"qas\[0\].answers\[0\]: field 'text' is missing"),
    ({**GOOD_QA, "answers": "France"}, r"qas\[0\]: 'answers' is str, not a list"),
])
def test_squad_questions_with_missing_values_are_refused_by_place(tmp_path, qa, message):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(_squad(qa)))
    with pytest.raises(ValueError, match=r"dev.json: data\[0\].paragraphs\[0\]." + message):
        read_squad_json(path)


def test_squad_files_that_cannot_be_read(tmp_path):
    assert read_squad_json(_gz(tmp_path / "dev.json.gz", json.dumps(_squad(GOOD_QA))))[0]["answers"] == ["France"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [\n  {"paragraphs": [}\n]}')
    with pytest.raises(ValueError, match=r"bad.json as JSON: line 2, column \d+ is not valid JSON"):
        read_squad_json(bad)
    with pytest.raises(ValueError, match="is a folder"):
        read_squad_json(tmp_path)
    with pytest.raises(FileNotFoundError, match="SQuAD file .*nope.json does not exist"):
        read_squad_json(tmp_path / "nope.json")


def _gz(path, text):
    with gzip.open(path, "wt") as f:
        f.write(text)
    return path


def test_a_damaged_bundled_task_file_says_to_reinstall(tmp_path, monkeypatch):
    from llm_jax.data.tasks import bundled

    folder = tmp_path / "tasks" / "wordnet-supersense"
    folder.mkdir(parents=True)
    good = json.dumps({"idx": 0, "text": "a kind of food", "label": 6})
    (folder / "train.jsonl.xz").write_bytes(lzma.compress((good + "\n" + json.dumps({"idx": 1, "text": None,
                                                                                      "label": 6}) + "\n").encode()))
    monkeypatch.setattr(bundled, "bundled_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match=r"train.jsonl.xz is damaged at line 2 .*'text' is missing.*reinstall"):
        bundled.bundled_records("wordnet-supersense", "train", True)
    data = lzma.compress("".join(good + "\n" for _ in range(500)).encode())
    (folder / "train.jsonl.xz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"train.jsonl.xz is damaged after line \d+ .*EOFError.*reinstall"):
        bundled.bundled_records("wordnet-supersense", "train", True)

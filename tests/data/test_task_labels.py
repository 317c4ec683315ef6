"""Local task labels → ids: every way a label can arrive (JSON int, float, string, bool; CSV text) against every way
the names can be given (explicitly, in any order or spelling) or inferred (the sorted distinct labels)."""

import json

import pytest

from llm_jax.data.tasks import TaskConfig, load_task


def _cell(value) -> str:
    """How a value is written in a CSV cell."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _write(tmp_path, labels, encoding, *, name="train"):
    """A local classification file whose labels are `labels`, written as `encoding` says."""
    if encoding == "csv":
        path = tmp_path / f"{name}.csv"
        path.write_text("text,label\n" + "".join(f"t{i},{_cell(v)}\n" for i, v in enumerate(labels)))
        return path
    convert = {"json": lambda v: v, "float": float, "string": _cell}[encoding]
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}", "label": convert(v)}) + "\n" for i, v in enumerate(labels)))
    return path


def _ids(tmp_path, labels, encoding, label_names):
    path = _write(tmp_path, labels, encoding, name=f"train{len(list(tmp_path.iterdir()))}")  # a new file each call
    task = load_task(TaskConfig(name="local", train_file=str(path), validation_file=str(path),
                                label_names=label_names))
    return [r["label"] for r in task.splits["validation"]], task.spec


NUMERIC = {  # case: (labels, task.label_names, ids)
    "1..5 named": ([1, 2, 3, 4, 5], "1,2,3,4,5", [0, 1, 2, 3, 4]),
    "1..5 named in reverse": ([1, 2, 3, 4, 5], "5,4,3,2,1", [4, 3, 2, 1, 0]),
    "1..5 inferred": ([1, 2, 3, 4, 5], "", [0, 1, 2, 3, 4]),
    "+1/-1 named": ([1, -1, 1, -1], "1,-1", [0, 1, 0, 1]),
    "+1/-1 inferred": ([1, -1, 1, -1], "", [1, 0, 1, 0]),
    "inferred by value, not text": ([10, 2, 10], "", [1, 0, 1]),
    "names spelled as floats": ([1, 2, 2], "1.0,2.0", [0, 1, 1]),
    "0/1 are ids into word names": ([0, 1, 1], "neg,pos", [0, 1, 1]),
}


@pytest.mark.parametrize("encoding", ["json", "float", "string", "csv"])
@pytest.mark.parametrize("case", list(NUMERIC))
def test_numeric_labels_map_in_the_order_of_the_names(tmp_path, case, encoding):
    labels, names, want = NUMERIC[case]
    ids, spec = _ids(tmp_path, labels, encoding, names)
    assert ids == want
    assert spec.num_labels == len(set(want))


WORDS = {
    "booleans named": ([True, False, True], "true,false", [0, 1, 0]),
    "booleans named in Python's spelling": ([True, False, True], "False,True", [1, 0, 1]),
    "booleans inferred": ([True, False, True], "", [1, 0, 1]),
    "words named": (["pos", "neg", "pos"], "pos,neg", [0, 1, 0]),
    "words inferred": (["pos", "neg", "pos"], "", [1, 0, 1]),
}


@pytest.mark.parametrize("encoding", ["json", "string", "csv"])
@pytest.mark.parametrize("case", list(WORDS))
def test_boolean_and_word_labels(tmp_path, case, encoding):
    labels, names, want = WORDS[case]
    assert _ids(tmp_path, labels, encoding, names)[0] == want


def test_inferred_names_are_the_labels_themselves(tmp_path):
    assert _ids(tmp_path, [3, 1, 2], "json", "")[1].label_names == ("1", "2", "3")
    assert _ids(tmp_path, [1.0, -1.0], "float", "")[1].label_names == ("-1", "1")
    assert _ids(tmp_path, [True, False], "json", "")[1].label_names == ("false", "true")
    assert _ids(tmp_path, [0, 1], "json", "one,two")[1].label_names == ("one", "two")  # as given


@pytest.mark.parametrize("encoding", ["json", "float", "string", "csv"])
@pytest.mark.parametrize("names", ["1,2", ""])
def test_an_unknown_label_names_the_file_row_and_labels(tmp_path, encoding, names):
    train = _write(tmp_path, [1, 2, 1], encoding)
    validation = _write(tmp_path, [2, 1, 3], encoding, name="dev")
    with pytest.raises(ValueError, match=r"dev\.(jsonl|csv) row 3: label .*3.* is not one of the task's labels "
                                         r"\['1', '2'\]; list every label in task.label_names") as e:
        load_task(TaskConfig(name="local", train_file=str(train), validation_file=str(validation), label_names=names))
    assert "\n" not in str(e.value)


def test_word_names_do_not_take_integers_out_of_range(tmp_path):
    path = _write(tmp_path, [0, 1, 2], "json")
    with pytest.raises(ValueError, match="row 3: label 2 is not one of the task's labels"):
        load_task(TaskConfig(name="local", train_file=str(path), validation_file=str(path), label_names="neg,pos"))


def test_names_that_are_the_same_label_are_refused(tmp_path):
    path = _write(tmp_path, [1, 2], "json")
    with pytest.raises(ValueError, match="lists '1' and '1.0', which are the same label"):
        load_task(TaskConfig(name="local", train_file=str(path), validation_file=str(path), label_names="1,1.0,2"))


@pytest.mark.parametrize("names, want", [("1,2", [[0, 1, 0]]), ("", [[0, 1, 0]]), ("2,1", [[1, 0, 1]])])
def test_token_tags_map_like_labels(tmp_path, names, want):
    path = tmp_path / "tags.jsonl"
    path.write_text(json.dumps({"tokens": ["a", "b", "c"], "tags": [1, 2.0, "1"]}) + "\n")
    task = load_task(TaskConfig(name="local", kind="token_classification", train_file=str(path),
                                validation_file=str(path), text_fields="tokens", label_field="tags", label_names=names))
    assert [r["label"] for r in task.splits["train"]] == want


@pytest.mark.parametrize("label, names, want", [(1, "", 1), (1.0, "", 1), ("1", "", 1), ("B", "A,B", 1),
                                                (1, "A,B", 1)])
def test_multiple_choice_labels_are_choice_indices(tmp_path, label, names, want):
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps({"context": "pick", "choices": ["x", "y"], "label": label}) + "\n")
    task = load_task(TaskConfig(name="local", kind="multiple_choice", train_file=str(path), validation_file=str(path),
                                text_fields="context", label_names=names))
    assert task.splits["train"][0]["label"] == want


@pytest.mark.parametrize("label, message", [(1.5, "not a whole number"), (True, "boolean"),
                                            (2, "not the index of one of the 2 choices"), (-1, "not the index"),
                                            ("b", "not an integer")])
def test_bad_multiple_choice_labels_are_refused(tmp_path, label, message):
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps({"context": "pick", "choices": ["x", "y"], "label": label}) + "\n")
    with pytest.raises(ValueError, match=f"mc.jsonl row 1.*{message}"):
        load_task(TaskConfig(name="local", kind="multiple_choice", train_file=str(path), validation_file=str(path),
                             text_fields="context"))


@pytest.mark.parametrize("encoding", ["json", "float", "string", "csv"])
def test_regression_scores_arrive_as_any_number(tmp_path, encoding):
    path = _write(tmp_path, [-1, 2, 0.5], encoding)
    task = load_task(TaskConfig(name="local", kind="regression", train_file=str(path), validation_file=str(path)))
    assert [r["label"] for r in task.splits["validation"]] == [-1.0, 2.0, 0.5]


@pytest.mark.parametrize("value, message", [(True, "boolean"), ("high", "not a number"), ("", "missing or null")])
def test_regression_scores_that_are_not_numbers_are_refused(tmp_path, value, message):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"text": "a", "label": 1.0}) + "\n" + json.dumps({"text": "b", "label": value}) + "\n")
    with pytest.raises(ValueError, match=f"r.jsonl row 2: field 'label'.*{message}"):
        load_task(TaskConfig(name="local", kind="regression", train_file=str(path), validation_file=str(path)))

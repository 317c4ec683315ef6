"""Corpus loading: the bundled corpus, local files through `datasets`, and the errors people will meet."""

import json
import lzma

import pytest

from llm_jax.data import bundled_dir, load_documents

# Document counts from bundled/README.md: python-docs + kjv + wordnet.
VALIDATION_DOCS = 11 + 24 + 246
TRAIN_DOCS = 642 + 1165 + 13252


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_bundled_files_are_package_data():
    root = bundled_dir()
    assert (root / "README.md").is_file()
    for split in ("train", "validation"):
        assert (root / "corpus" / f"{split}.jsonl.xz").stat().st_size > 0
    for licence in ("kjv.txt", "python-docs.txt", "wordnet.txt"):
        assert (root / "licenses" / licence).is_file()
    for task in ("wordnet-supersense", "wordnet-gloss", "wordnet-wic"):
        names = {p.name for p in (root / "tasks" / task).iterdir()}
        assert {"meta.json", "train.jsonl.xz", "validation.jsonl.xz", "test.jsonl.xz"} <= names


def test_bundled_validation_matches_readme(validation_docs):
    assert len(validation_docs) == VALIDATION_DOCS
    for doc in validation_docs:
        lines = doc.split("\n")
        assert all(line and line == line.strip() for line in lines)
    # Documents are multi-sentence (what NSP and FULL-SENTENCES need), not one sentence each.
    assert sum(doc.count("\n") + 1 for doc in validation_docs) > 3 * VALIDATION_DOCS


def test_bundled_train_matches_readme():
    assert len(load_documents("bundled", "train")) == TRAIN_DOCS


def test_max_documents_takes_the_first(validation_docs):
    assert load_documents("bundled", "validation", max_documents=7) == validation_docs[:7]
    assert load_documents("bundled", "validation", max_documents=10_000) == validation_docs


def test_local_jsonl_and_custom_field(tmp_path):
    path = _write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"body": "  First sentence.\n\nSecond sentence.  \n", "id": 1},
            {"body": "   ", "id": 2},
            {"body": "Only one.", "id": 3},
        ],
    )
    docs = load_documents(str(path), text_field="body")
    # Lines are stripped, blank lines and blank documents removed.
    assert docs == ["First sentence.\nSecond sentence.", "Only one."]
    assert load_documents(str(path), text_field="body", max_documents=1) == ["First sentence.\nSecond sentence."]


def test_local_jsonl_xz_glob_and_split_placeholder(tmp_path):
    for split in ("train", "validation"):
        data = "".join(json.dumps({"text": f"{split} doc {i}.\nMore."}) + "\n" for i in range(3))
        with lzma.open(tmp_path / f"{split}.jsonl.xz", "wt") as f:
            f.write(data)
    pattern = str(tmp_path / "{split}.jsonl.xz")
    assert load_documents(pattern, "validation") == [f"validation doc {i}.\nMore." for i in range(3)]
    assert load_documents(pattern, "train")[0] == "train doc 0.\nMore."
    # A glob reads every match, in sorted file order.
    assert len(load_documents(str(tmp_path / "*.jsonl.xz"))) == 6


def test_local_txt_blank_line_separated(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("Doc one, line one.\nDoc one, line two.\n\nDoc two.\n\n\n  Doc three.  \n")
    assert load_documents(str(path)) == ["Doc one, line one.\nDoc one, line two.", "Doc two.", "Doc three."]


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_documents(str(missing))
    with pytest.raises(FileNotFoundError, match="No files match"):
        load_documents(str(tmp_path / "*.jsonl"))


def test_empty_file_and_empty_documents(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_documents(str(empty))
    blank = _write_jsonl(tmp_path / "blank.jsonl", [{"text": ""}, {"text": " \n "}])
    with pytest.raises(ValueError, match="no non-empty documents"):
        load_documents(str(blank))


def test_missing_field_lists_available_fields(tmp_path):
    path = _write_jsonl(tmp_path / "c.jsonl", [{"content": "x.", "title": "t"}])
    with pytest.raises(ValueError, match=r"no field 'text'.*content, title"):
        load_documents(str(path))


def test_non_text_field_is_rejected(tmp_path):
    path = _write_jsonl(tmp_path / "c.jsonl", [{"text": "x.", "n": 3}])
    with pytest.raises(ValueError, match="not text"):
        load_documents(str(path), text_field="n")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="splits train, validation"):
        load_documents("bundled", "test")
    with pytest.raises(ValueError, match="max_documents"):
        load_documents("bundled", "validation", max_documents=0)
    with pytest.raises(ValueError, match="is a folder"):
        load_documents(str(tmp_path))
    odd = tmp_path / "c.csv.gz"
    odd.write_text("x")
    with pytest.raises(ValueError, match="Cannot tell the format"):
        load_documents(str(tmp_path / "c.csv*"))


def test_unreachable_hub_dataset_is_a_clear_error():
    # The test session runs with HF_HUB_OFFLINE=1 (tests/conftest.py), so this fails fast without network.
    with pytest.raises(RuntimeError, match="Could not load Hugging Face dataset"):
        load_documents("llm-jax-tests/no-such-dataset", "train")


def test_undecodable_lines_are_skipped_and_counted(tmp_path, caplog):
    import logging

    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"text": "good one.\\nsecond sentence."}\n{"text": "bad \xff\xfe bytes"}\n{"text": "good two."}\n')
    with caplog.at_level(logging.WARNING):
        docs = load_documents(str(path))
    assert docs == ["good one.\nsecond sentence.", "good two."]
    assert "skipped 1 line(s) that are not valid UTF-8" in caplog.text


def _cut_xz(path):
    data = lzma.compress("".join(json.dumps({"text": f"doc {i}."}) + "\n" for i in range(500)).encode())
    path.write_bytes(data[: len(data) // 2])


BROKEN = {  # file name: (how to write it, what the message says)
    "cut.jsonl.xz": (_cut_xz, r"is truncated or damaged after line \d+ .*download or compress it again"),
    "notgzip.jsonl.gz": (lambda p: p.write_text('{"text": "x"}\n'), r"is truncated or damaged"),
    "bad.jsonl": (lambda p: p.write_text('{"text": "a."}\n{"text": "b." oops}\n'), r"line 2 is not valid JSON"),
    "array.jsonl": (lambda p: p.write_text('{"text": "a."}\n["b."]\n'), r"line 2 holds a JSON list, not an object"),
    "doc.json": (lambda p: p.write_text('[{"text": "a."},\n {"text": "b."}\n'), r"line 3, column 1 is not valid JSON"),
    "empty.jsonl": (lambda p: p.write_text(""), r"is empty \(0 bytes\)"),
    "folder.jsonl": (lambda p: p.mkdir(), r"is a folder, not a file"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_an_unreadable_corpus_file_gets_one_line_naming_it(tmp_path, name):
    write, message = BROKEN[name]
    write(tmp_path / name)
    with pytest.raises(ValueError, match=message) as e:
        load_documents(str(tmp_path / name))
    assert name in str(e.value) and "\n" not in str(e.value)


def test_a_bad_file_in_a_glob_is_named(tmp_path):
    _write_jsonl(tmp_path / "a.jsonl", [{"text": "fine."}])
    (tmp_path / "b.jsonl").write_text('{"text": "fine."}\n{"text": \n')
    with pytest.raises(ValueError, match=r"corpus file .*b\.jsonl as JSON: line 2 is not valid JSON"):
        load_documents(str(tmp_path / "*.jsonl"))


def test_null_documents_are_left_out_and_counted(tmp_path, caplog):
    import logging

    path = _write_jsonl(tmp_path / "c.jsonl", [{"text": "one."}, {"text": None}, {"text": "two."}])
    with caplog.at_level(logging.WARNING):
        assert load_documents(str(path)) == ["one.", "two."]
    assert "left out 1 record(s) whose 'text' is null" in caplog.text

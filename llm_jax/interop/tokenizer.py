"""Tokenizers in and out of Hugging Face checkpoint folders.

In: the tokenizer that ships with a checkpoint, as a `tokenizers.Tokenizer` (`load_hf_tokenizer`). Three layouts
exist on the Hub; we read them with the `tokenizers` library only (no `transformers`):

* `tokenizer.json`: the serialised fast tokenizer, complete.
* `vocab.txt`: a WordPiece vocabulary (BERT). The pipeline is `transformers`' `BertTokenizer`: BERT normaliser
  (lower-casing per `do_lower_case`, default true), BERT pre-tokeniser, `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]`
  templates with token types 0 / 1.
* `vocab.json` + `merges.txt`: a byte-level BPE (RoBERTa, after GPT-2). The pipeline is `transformers`'
  `RobertaTokenizer`: byte-level pre-tokeniser (no prefix space unless `add_prefix_space`), `<s> A </s>` /
  `<s> A </s></s> B </s>` templates.

Special-token names and flags come from `tokenizer_config.json` / `special_tokens_map.json` when present.

Out: `save_hf_tokenizer` writes the files `transformers.AutoTokenizer.from_pretrained` needs to rebuild the same
tokenizer: `tokenizer.json`, `tokenizer_config.json` (class, `model_max_length`, special-token roles, case
handling), `special_tokens_map.json`, and `spiece.model` for SentencePiece vocabularies.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from llm_jax.data.tokenizers import (
    SENTINELS,
    SPIECE_MODEL,
    infer_roles,
    spm_model_proto,
    tokenizer_kind,
)
from llm_jax.data.tokenizers.unigram import sentinel_count, unigram_flags

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
WORDPIECE_VOCAB_FILE = "vocab.txt"
BPE_VOCAB_FILE = "vocab.json"
BPE_MERGES_FILE = "merges.txt"

# transformers' defaults for BertTokenizer and RobertaTokenizer.
_WORDPIECE_SPECIALS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                       "mask_token": "[MASK]"}
_ROBERTA_SPECIALS: dict[str, Any] = {
    "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
    "pad_token": "<pad>",
    # Why lstrip: as in roberta-base's tokenizer.json, the space before "<mask>" belongs to the mask, so that
    # "The capital of France is <mask>." asks for a word-initial piece ("Ġparis"), as RoBERTa was pretrained.
    "mask_token": {"content": "<mask>", "lstrip": True},
}
_SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# transformers' BasicTokenizer never splits a word longer than this into pieces: it becomes [UNK].
_WORDPIECE_MAX_CHARS = 100


def _read_json(path: pathlib.Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); re-download it or delete it to use the defaults.") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} should hold a JSON object, not a {type(data).__name__}; re-download it.")
    return data


def _added_token(spec: str | dict[str, Any], special: bool = True) -> tokenizers.AddedToken:
    """A `tokenizers.AddedToken` from a config entry: a plain string or transformers' AddedToken dict."""
    if isinstance(spec, str):
        return tokenizers.AddedToken(spec, special=special, normalized=not special)
    return tokenizers.AddedToken(
        spec["content"], single_word=spec.get("single_word", False), lstrip=spec.get("lstrip", False),
        rstrip=spec.get("rstrip", False), normalized=spec.get("normalized", not special),
        special=spec.get("special", special))


def _content(spec: str | dict[str, Any]) -> str:
    return spec if isinstance(spec, str) else spec["content"]


def _settings(directory: pathlib.Path) -> dict[str, Any]:
    """tokenizer_config.json over special_tokens_map.json (transformers gives the former precedence)."""
    return {**_read_json(directory / SPECIAL_TOKENS_MAP_FILE), **_read_json(directory / TOKENIZER_CONFIG_FILE)}


def _add_special_tokens(tok: tokenizers.Tokenizer, settings: dict[str, Any], defaults: dict[str, Any],
                        vocab: dict[str, int]) -> dict[str, str]:
    """Registers the special tokens (so that e.g. "[MASK]" in text is never split) and returns role → string.

    A role the config does not name takes its default only if the vocabulary has that string, so that a
    vocabulary without e.g. `<s>` (GPT-2's) does not grow tokens the model has no embeddings for.
    """
    roles: dict[str, str | dict[str, Any]] = {}
    for role in _SPECIAL_ROLES:
        spec = settings.get(role)
        if spec is None and role in defaults and _content(defaults[role]) in vocab:
            spec = defaults[role]
        if spec is not None:
            roles[role] = spec
    by_content: dict[str, tokenizers.AddedToken] = {_content(s): _added_token(s) for s in roles.values()}
    for spec in settings.get("additional_special_tokens") or ():
        by_content[_content(spec)] = _added_token(spec)
    # transformers ≥ 4.34 records every added token with its flags and id here; these flags take precedence.
    declared = {int(i): spec for i, spec in (settings.get("added_tokens_decoder") or {}).items()}
    for spec in declared.values():
        by_content[spec["content"]] = _added_token(spec, special=spec.get("special", False))
    tok.add_special_tokens([t for t in by_content.values() if t.special])
    tok.add_tokens([t for t in by_content.values() if not t.special])
    for token_id, spec in sorted(declared.items()):
        if tok.token_to_id(spec["content"]) != token_id:
            raise ValueError(f"tokenizer_config.json gives {spec['content']!r} the id {token_id}, but the vocabulary "
                             f"puts it at {tok.token_to_id(spec['content'])}; the files come from different "
                             f"tokenizers.")
    return {role: _content(spec) for role, spec in roles.items()}


def _token_id(tok: tokenizers.Tokenizer, token: str, directory: pathlib.Path) -> int:
    token_id = tok.token_to_id(token)
    if token_id is None:
        raise ValueError(f"The special token {token!r} is not in the vocabulary of {directory}; fix the special "
                         f"token names in {TOKENIZER_CONFIG_FILE}.")
    return token_id


def _wordpiece(directory: pathlib.Path, settings: dict[str, Any]) -> tokenizers.Tokenizer:
    """BERT's WordPiece tokenizer from `vocab.txt`, assembled as `transformers.BertTokenizer` does."""
    # One token per line, id = line number; only the newline is stripped (as transformers' `load_vocab`).
    lines = (directory / WORDPIECE_VOCAB_FILE).read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab = {token: i for i, token in enumerate(lines)}
    unk = _content(settings.get("unk_token") or _WORDPIECE_SPECIALS["unk_token"])
    tok = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=_WORDPIECE_MAX_CHARS))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
        strip_accents=settings.get("strip_accents"), lowercase=settings.get("do_lower_case", True))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    roles = _add_special_tokens(tok, settings, _WORDPIECE_SPECIALS, vocab)
    cls, sep = roles.get("cls_token"), roles.get("sep_token")
    if cls and sep:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, _token_id(tok, cls, directory)), (sep, _token_id(tok, sep, directory))])
    return tok


def _bytelevel_bpe(directory: pathlib.Path, settings: dict[str, Any]) -> tokenizers.Tokenizer:
    """RoBERTa's byte-level BPE from `vocab.json` + `merges.txt`, assembled as `transformers.RobertaTokenizer` does."""
    vocab_path, merges_path = directory / BPE_VOCAB_FILE, directory / BPE_MERGES_FILE
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    add_prefix_space = settings.get("add_prefix_space", False)
    tok = tokenizers.Tokenizer(models.BPE.from_file(str(vocab_path), str(merges_path), dropout=None,
                                                    continuing_subword_prefix="", end_of_word_suffix="",
                                                    fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    roles = _add_special_tokens(tok, settings, _ROBERTA_SPECIALS, vocab)
    cls, sep = roles.get("cls_token"), roles.get("sep_token")
    if cls and sep:  # GPT-2's vocabulary has neither, and no template.
        tok.post_processor = processors.RobertaProcessing(
            (sep, _token_id(tok, sep, directory)), (cls, _token_id(tok, cls, directory)),
            trim_offsets=settings.get("trim_offsets", True), add_prefix_space=add_prefix_space)
    return tok


def load_hf_tokenizer(path: str | os.PathLike) -> tokenizers.Tokenizer:
    """The tokenizer of a Hugging Face checkpoint directory.

    Padding and truncation are switched off even when `tokenizer.json` enables them (all-MiniLM-L6-v2's pads
    every input to 128 tokens): `transformers` chooses them per call, and so should the caller here
    (`tok.enable_padding(...)`, `tok.enable_truncation(...)`).

    Args:
      path: the directory holding `tokenizer.json`, or `vocab.txt`, or `vocab.json` + `merges.txt`.

    Raises:
      FileNotFoundError: no such directory, or none of those files in it.
    """
    directory = pathlib.Path(path).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"Tokenizer directory {directory} does not exist (or is a file); pass the checkpoint "
                                f"folder that holds tokenizer.json or vocab files.")
    settings = _settings(directory)
    if (directory / TOKENIZER_FILE).is_file():
        try:
            tok = tokenizers.Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        except Exception as e:  # the tokenizers library raises a bare Exception for unparsable files
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{directory / TOKENIZER_FILE} is not a readable tokenizer ({first}); download or "
                             "export the tokenizer files again.") from e
    elif (directory / WORDPIECE_VOCAB_FILE).is_file():
        tok = _wordpiece(directory, settings)
    elif (directory / BPE_VOCAB_FILE).is_file() and (directory / BPE_MERGES_FILE).is_file():
        tok = _bytelevel_bpe(directory, settings)
    else:
        raise FileNotFoundError(
            f"No tokenizer in {directory}: looked for {TOKENIZER_FILE}, {WORDPIECE_VOCAB_FILE} (WordPiece), or "
            f"{BPE_VOCAB_FILE} with {BPE_MERGES_FILE} (byte-level BPE). Download the tokenizer files with the "
            f"checkpoint.")
    tok.no_padding()
    tok.no_truncation()
    return tok


# Our roles under transformers' names; `eod` and the sentinels go to `additional_special_tokens`.
_HF_ROLE_NAMES = {"bos": "bos_token", "eos": "eos_token", "unk": "unk_token", "sep": "sep_token",
                  "pad": "pad_token", "cls": "cls_token", "mask": "mask_token"}


def _kind(tok: tokenizers.Tokenizer) -> str | None:
    """Our kind of `tok`, or None for a checkpoint's tokenizer of another design (exported generically)."""
    try:
        return tokenizer_kind(tok)
    except ValueError:
        return None


def default_hf_class(tok: tokenizers.Tokenizer, roles: Mapping[str, str]) -> str:
    """The transformers class of a tokenizer, from its kind and roles (what a family would pass).

    Tokenizers of no kind of ours get `PreTrainedTokenizerFast`, which reads `tokenizer.json` as it is.
    """
    kind = _kind(tok)
    if kind == "unigram":
        if SENTINELS in roles:
            return "T5TokenizerFast"
        if "cls" in roles:
            # XLNet's classifier token is its own `<cls>` (placed last); ALBERT's is BERT's [CLS] (first).
            return "XLNetTokenizerFast" if roles["cls"] == "<cls>" else "AlbertTokenizerFast"
        return "PreTrainedTokenizerFast"
    if kind == "bytelevel_bpe":
        return "RobertaTokenizerFast" if "cls" in roles else "GPT2TokenizerFast"
    return {"wordpiece": "BertTokenizerFast", "gpt1_bpe": "OpenAIGPTTokenizerFast"}.get(kind, "PreTrainedTokenizerFast")


def _lowercases(normalizer: dict[str, Any] | None) -> bool:
    if not normalizer:
        return False
    if normalizer["type"] == "BertNormalizer":
        return bool(normalizer.get("lowercase"))
    return normalizer["type"] == "Lowercase" or any(_lowercases(n) for n in normalizer.get("normalizers", ()))


def _write_atomic(data: bytes, path: pathlib.Path) -> None:
    """A crash leaves the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def hf_tokenizer_config(tok: tokenizers.Tokenizer, *, model_max_length: int | None = None,
                        tokenizer_class: str | None = None,
                        roles: Mapping[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """`(tokenizer_config.json, special_tokens_map.json)` contents for `tok` (see `save_hf_tokenizer`)."""
    roles = infer_roles(tok) if roles is None else dict(roles)
    hf_class = tokenizer_class or default_hf_class(tok, roles)
    kind = _kind(tok)
    data = json.loads(tok.to_str())
    named = {hf: roles.get(ours) for ours, hf in _HF_ROLE_NAMES.items()}
    # Every special token that no named role covers (XLNet's <eod>/<eop>, T5's sentinels) is an additional one,
    # in id order except the sentinels, which transformers lists as <extra_id_0>, <extra_id_1>, ….
    n_sentinels = sentinel_count(tok) if kind == "unigram" else 0
    sentinels = [tok.id_to_token(tok.get_vocab_size() - 1 - i) for i in range(n_sentinels)]
    taken = {t for t in named.values() if t} | set(sentinels)
    extra = [t["content"] for t in sorted(data["added_tokens"], key=lambda t: t["id"])
             if t["special"] and t["content"] not in taken] + sentinels
    special_map: dict[str, Any] = {k: v for k, v in named.items() if v is not None}
    if extra:
        special_map["additional_special_tokens"] = extra
    # Roles the family has no token for are written as null, so that a class default (ALBERT's bos_token="[CLS]",
    # GPT-2's unk "<|endoftext|>") does not give transformers a role our tokenizer lacks.
    config: dict[str, Any] = {"tokenizer_class": hf_class, **named}
    if extra:
        config["additional_special_tokens"] = extra
    if model_max_length is not None:
        if isinstance(model_max_length, bool) or not isinstance(model_max_length, int) or model_max_length <= 0:
            raise ValueError(f"model_max_length must be a positive integer (the model's longest input in tokens), "
                             f"got {model_max_length!r}.")
        config["model_max_length"] = model_max_length
    if kind in ("wordpiece", "gpt1_bpe"):
        config["do_lower_case"] = _lowercases(data.get("normalizer"))
    elif kind == "bytelevel_bpe":
        config["add_prefix_space"] = False
    elif kind == "unigram":
        flags = unigram_flags(tok)
        config.update(do_lower_case=flags["lowercase"], keep_accents=flags["keep_accents"])
        if n_sentinels:
            config["extra_ids"] = n_sentinels
    return config, special_map


def save_hf_tokenizer(tok: tokenizers.Tokenizer, path: str | os.PathLike, *, model_max_length: int | None = None,
                      tokenizer_class: str | None = None,
                      roles: Mapping[str, str] | None = None) -> list[pathlib.Path]:
    """Writes `tok` so that `transformers.AutoTokenizer.from_pretrained(path)` rebuilds the same tokenizer.

    Files: `tokenizer.json`; `tokenizer_config.json` with `tokenizer_class`, `model_max_length`, the special
    tokens by transformers' role names (`cls_token`, `pad_token`, …; null where the family has none),
    `do_lower_case` / `keep_accents` / `add_prefix_space` / `extra_ids` where the class reads them;
    `special_tokens_map.json`; and `spiece.model` for a Unigram (SentencePiece) vocabulary, which transformers'
    ALBERT/XLNet/T5 classes read when `tokenizer.json` is absent. Existing files of those names are replaced.
    `tokenizer.json` is written without padding or truncation: `model_max_length` bounds truncation instead.

    Args:
      tok: The tokenizer: one of our kinds (`llm_jax.data.tokenizers.KINDS`), or a checkpoint's of another
        design, written for `PreTrainedTokenizerFast` unless `tokenizer_class` says otherwise.
      path: Target directory, created if absent.
      model_max_length: The model's longest input in tokens (`max_position_embeddings`, less RoBERTa's offset
        of 2). Without it transformers assumes no limit and `truncation=True` does not truncate.
      tokenizer_class: transformers class name (`"BertTokenizerFast"`, `"T5TokenizerFast"`, …), as the family
        declares it; default from the kind and roles (`default_hf_class`).
      roles: The family's role map (e.g. `XLNET_ROLES`); default inferred from the vocabulary.

    Returns:
      The written files.

    Raises:
      ValueError: A bad `model_max_length`; nothing is written then.
      NotADirectoryError: `path` is a file.
    """
    config, special_map = hf_tokenizer_config(tok, model_max_length=model_max_length,
                                              tokenizer_class=tokenizer_class, roles=roles)
    directory = pathlib.Path(path).expanduser()
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file; the tokenizer files go into a directory. Pick another path.")
    directory.mkdir(parents=True, exist_ok=True)
    # Padding and truncation are left to each call, as transformers does (and as `load_hf_tokenizer` reads them).
    plain = tokenizers.Tokenizer.from_str(tok.to_str())
    plain.no_padding()
    plain.no_truncation()
    files = {TOKENIZER_FILE: plain.to_str(pretty=True).encode("utf-8"),
             TOKENIZER_CONFIG_FILE: (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
             SPECIAL_TOKENS_MAP_FILE: (json.dumps(special_map, indent=2, ensure_ascii=False) + "\n").encode("utf-8")}
    if _kind(tok) == "unigram":
        files[SPIECE_MODEL] = spm_model_proto(tok)
    for name, data in files.items():
        _write_atomic(data, directory / name)
    return [directory / name for name in files]


__all__ = ["TOKENIZER_FILE", "default_hf_class", "hf_tokenizer_config", "load_hf_tokenizer", "save_hf_tokenizer"]

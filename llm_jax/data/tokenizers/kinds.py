"""Tokenizer kinds, the family styles built on them, and :func:`train_tokenizer`.

=================== ============================================ ==========================================
kind                algorithm                                    families (style constant)
=================== ============================================ ==========================================
``wordpiece``       BERT's WordPiece                             BERT (:data:`BERT_TOKENIZER`)
``bytelevel_bpe``   byte-level BPE                               RoBERTa, GPT-2 (``ROBERTA_``, ``GPT2_TOKENIZER``)
``gpt1_bpe``        lower-cased BPE with ``</w>`` word ends      GPT-1 (:data:`GPT1_TOKENIZER`)
``unigram``         SentencePiece Unigram                        ALBERT, XLNet, T5 (``ALBERT_``, ``XLNET_``,
                                                                 ``T5_TOKENIZER``)
``wordlevel``       whitespace-separated words                   Transformer-XL (:data:`TRANSFO_XL_TOKENIZER`)
=================== ============================================ ==========================================

A family declares a :class:`TokenizerSpec` (kind, special tokens in id order, role map, input template, case
handling, Hugging Face class) and trains with ``spec.train(texts, vocab_size)``; nothing here branches on a
family's name. All training goes through library trainers (``tokenizers``, ``sentencepiece``); the kind modules
only fix what those leave to chance, so the same texts always give the same tokenizer.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import tokenizers
from tokenizers import models, processors

from llm_jax.data.tokenizers import roles as R
from llm_jax.data.tokenizers.bpe import END_OF_WORD, train_bytelevel_bpe, train_gpt1_bpe
from llm_jax.data.tokenizers.unigram import train_unigram
from llm_jax.data.tokenizers.wordlevel import train_wordlevel
from llm_jax.data.tokenizers.wordpiece import train_wordpiece

KINDS = ("wordpiece", "bytelevel_bpe", "gpt1_bpe", "unigram", "wordlevel")
# Input templates (what add_special_tokens=True wraps around one or two segments):
#   cls_first         [CLS] A [SEP] B [SEP], token types 0/1 (BERT §3, Figure 2; ALBERT)
#   cls_first_double  <s> A </s></s> B </s> (RoBERTa §4.2, with its FULL-SENTENCES inputs)
#   cls_last          A <sep> B <sep> <cls>, token types 0/1/2: the classifier token comes last (XLNet's
#                     run_classifier)
#   eos_only          A </s> B </s> (T5 §2.4: every input and target ends with EOS)
#   start_delim_extract  <bos> A <cls> and <bos> A <sep> B <cls>: Radford et al. 2018 §3.3 / Figure 1, start,
#                     delimiter and extract tokens around a text or a pair; the classifier reads the last token
#   sep_between       A alone, and A <sep> B: plain text with only a delimiter between the two texts of a pair
# (Layouts, not family names: a family names the one it uses.)
TEMPLATES = ("cls_first", "cls_first_double", "cls_last", "eos_only", "start_delim_extract", "sep_between")
_TEMPLATE_ROLES = {"cls_first": ("cls", "sep"), "cls_first_double": ("cls", "sep"), "cls_last": ("cls", "sep"),
                   "eos_only": ("eos",), "start_delim_extract": ("bos", "sep", "cls"), "sep_between": ("sep",)}

# Special tokens in id order, as in each model's published vocabulary.
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BYTELEVEL_BPE_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
GPT1_SPECIALS = ("<unk>",)
GPT2_SPECIALS = ("<|endoftext|>",)
ALBERT_SPECIALS = ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")
XLNET_SPECIALS = ("<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>")
T5_SPECIALS = ("<pad>", "</s>", "<unk>")
TRANSFO_XL_SPECIALS = ("<eos>", "<unk>")


@dataclasses.dataclass(frozen=True)
class TokenizerSpec:
    """How a family tokenizes: what :func:`train_tokenizer` and the Hugging Face export need to know.

    Attributes:
      kind: One of :data:`KINDS`.
      special_tokens: Special tokens in id order (ids ``0..n-1``).
      roles: Role → token (see :mod:`llm_jax.data.tokenizers.roles`).
      template: One of :data:`TEMPLATES`, or ``None`` for none (GPT, Transformer-XL).
      lowercase: Lower-case the text.
      keep_accents: ``unigram`` only: ``False`` applies ALBERT/XLNet's ``preprocess_text``.
      extra_ids: ``unigram`` only: T5's number of sentinels.
      keep_newlines: ``bytelevel_bpe`` only: newlines are text (GPT-2), documents are encoded whole.
      hf_class: The transformers tokenizer class that loads the exported files.
    """

    kind: str
    special_tokens: tuple[str, ...]
    roles: Mapping[str, str]
    template: str | None
    lowercase: bool
    hf_class: str
    keep_accents: bool = True
    extra_ids: int = 0
    keep_newlines: bool = False

    def train(self, texts: Iterable[str], vocab_size: int, **overrides) -> tokenizers.Tokenizer:
        """:func:`train_tokenizer` with this spec's settings; ``overrides`` replace any of them by name."""
        settings = {"special_tokens": self.special_tokens, "roles": self.roles, "template": self.template,
                    "lowercase": self.lowercase, "keep_accents": self.keep_accents, "extra_ids": self.extra_ids,
                    "keep_newlines": self.keep_newlines, **overrides}
        return train_tokenizer(self.kind, texts, vocab_size, **settings)


BERT_TOKENIZER = TokenizerSpec("wordpiece", WORDPIECE_SPECIALS, R.BERT_ROLES, "cls_first", True, "BertTokenizerFast")
ROBERTA_TOKENIZER = TokenizerSpec("bytelevel_bpe", BYTELEVEL_BPE_SPECIALS, R.ROBERTA_ROLES, "cls_first_double", False,
                                  "RobertaTokenizerFast")
GPT1_TOKENIZER = TokenizerSpec("gpt1_bpe", GPT1_SPECIALS, R.GPT1_ROLES, None, True, "OpenAIGPTTokenizerFast")
GPT2_TOKENIZER = TokenizerSpec("bytelevel_bpe", GPT2_SPECIALS, R.GPT2_ROLES, None, False, "GPT2TokenizerFast",
                               keep_newlines=True)
ALBERT_TOKENIZER = TokenizerSpec("unigram", ALBERT_SPECIALS, R.ALBERT_ROLES, "cls_first", True, "AlbertTokenizerFast",
                                 keep_accents=False)
XLNET_TOKENIZER = TokenizerSpec("unigram", XLNET_SPECIALS, R.XLNET_ROLES, "cls_last", False, "XLNetTokenizerFast",
                                keep_accents=False)
T5_TOKENIZER = TokenizerSpec("unigram", T5_SPECIALS, R.T5_ROLES, "eos_only", False, "T5TokenizerFast", extra_ids=100)
# transformers 5 has no Transformer-XL; the generic fast class loads tokenizer.json in 4.37.2 and 5.x alike.
TRANSFO_XL_TOKENIZER = TokenizerSpec("wordlevel", TRANSFO_XL_SPECIALS, R.TRANSFO_XL_ROLES, None, False,
                                     "PreTrainedTokenizerFast")
# What each kind trains with when not told otherwise: the first family that used it, except that a Unigram
# vocabulary is plain SentencePiece (cased, accents kept, as T5's): ALBERT's lower-casing and XLNet/ALBERT's
# accent stripping are family choices, made by their specs, never defaults that T5 could inherit unasked.
KIND_DEFAULTS = {"wordpiece": BERT_TOKENIZER, "bytelevel_bpe": ROBERTA_TOKENIZER, "gpt1_bpe": GPT1_TOKENIZER,
                 "unigram": dataclasses.replace(ALBERT_TOKENIZER, lowercase=False, keep_accents=True),
                 "wordlevel": TRANSFO_XL_TOKENIZER}
_NEEDS_UNK = ("wordpiece", "gpt1_bpe", "unigram", "wordlevel")


def _sentences(texts: Iterable[str]) -> Iterator[str]:
    """Yields the non-empty lines of every text (a document's sentences are separated by ``"\\n"``).

    Training on sentences rather than whole documents keeps the newline out of the vocabulary:
    :func:`tokenize_documents` encodes one sentence at a time, so a newline token would never be used.
    """
    for text in texts:
        for line in text.split("\n"):
            if line.strip():
                yield line


def template_roles(template: str) -> tuple[str, ...]:
    """The roles whose tokens a template (one of :data:`TEMPLATES`) places.

    Raises:
      ValueError: Unknown template.
    """
    if template not in TEMPLATES:
        raise ValueError(f"Unknown template {template!r}: choose one of {', '.join(TEMPLATES)}.")
    return _TEMPLATE_ROLES[template]


def set_template(tok: tokenizers.Tokenizer, template: str | None, roles: Mapping[str, str]) -> None:
    """Sets the post-processor that wraps segments in the family's special tokens (see :data:`TEMPLATES`).

    Raises:
      ValueError: Unknown template, or a role it needs missing from ``roles``.
    """
    if template is None:
        return
    if template not in TEMPLATES:
        raise ValueError(f"Unknown template {template!r}: choose one of {', '.join(TEMPLATES)}, or None.")
    missing = [r for r in _TEMPLATE_ROLES[template] if r not in roles]
    if missing:
        raise ValueError(f"The {template!r} template needs the role(s) {', '.join(missing)}, which the role map "
                         f"lacks: add them to roles= or pick another template.")
    ids = {token: tok.token_to_id(token) for token in (roles[r] for r in _TEMPLATE_ROLES[template])}
    if template == "eos_only":
        eos = roles["eos"]
        tok.post_processor = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
                                                           special_tokens=list(ids.items()))
        return
    if template == "sep_between":
        sep = roles["sep"]
        tok.post_processor = processors.TemplateProcessing(single="$A", pair=f"$A {sep} $B",
                                                           special_tokens=list(ids.items()))
        return
    cls, sep = roles["cls"], roles["sep"]
    if template == "start_delim_extract":
        start = roles["bos"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{start} $A {cls}", pair=f"{start} $A {sep} $B {cls}", special_tokens=list(ids.items()))
    elif template == "cls_first_double":
        tok.post_processor = processors.RobertaProcessing((sep, ids[sep]), (cls, ids[cls]), trim_offsets=True,
                                                          add_prefix_space=False)
    elif template == "cls_first":
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1", special_tokens=list(ids.items()))
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A:0 {sep}:0 {cls}:2", pair=f"$A:0 {sep}:0 $B:1 {sep}:1 {cls}:2",
            special_tokens=list(ids.items()))


def auto_template(kind: str, roles: Mapping[str, str]) -> str | None:
    """The template of the family whose kind and role tokens these are (a family's spec names it explicitly).

    WordPiece → ``cls_first`` (BERT); byte-level BPE with cls/sep → ``cls_first_double`` (RoBERTa; GPT-2's has
    none → ``None``); Unigram → ``cls_last`` when the classifier token is XLNet's own ``<cls>``, ``cls_first``
    with other cls/sep (ALBERT's ``[CLS]``/``[SEP]``), ``eos_only`` with only an end-of-sequence token (T5); GPT-1
    BPE and word-level → ``None``.
    """
    pair = "cls" in roles and "sep" in roles
    if kind == "wordpiece":
        return "cls_first" if pair else None
    if kind == "bytelevel_bpe":
        return "cls_first_double" if pair else None
    if kind == "unigram":
        if pair:
            return "cls_last" if roles["cls"] == "<cls>" else "cls_first"
        return "eos_only" if "eos" in roles else None
    return None


def _check_settings(kind: str, specials: Sequence[str], roles: Mapping[str, str], keep_newlines: bool,
                    extra_ids: int) -> None:
    R.check_role_map(roles)
    if not specials or len(set(specials)) != len(specials) or not all(isinstance(s, str) and s for s in specials):
        raise ValueError(f"special_tokens must be distinct non-empty strings, got {list(specials)!r}.")
    patterns = [s for s in specials if "{i}" in s]
    if patterns:
        raise ValueError(f"special_tokens contains the sentinel pattern {patterns[0]!r}: sentinels are not listed "
                         f"one by one; pass extra_ids=N (T5: 100) and keep the pattern in roles['sentinels'].")
    stray = [t for r, t in roles.items() if r != R.SENTINELS and t not in specials]
    if stray:
        raise ValueError(f"The role map names {stray} but special_tokens={list(specials)} lacks them: add them to "
                         f"special_tokens so they get ids.")
    if kind in _NEEDS_UNK and "unk" not in roles:
        raise ValueError(f"A {kind} tokenizer needs an unknown token: give the role map an 'unk' entry.")
    if keep_newlines and kind != "bytelevel_bpe":
        raise ValueError(f"keep_newlines=True needs a byte-level BPE (GPT-2): a {kind} tokenizer normalizes "
                         f"newlines to spaces. Use kind='bytelevel_bpe' or keep_newlines=False.")
    if extra_ids and kind != "unigram":
        raise ValueError(f"extra_ids (T5's sentinels) is for the unigram kind, not {kind}; use extra_ids=0.")
    if isinstance(extra_ids, bool) or not isinstance(extra_ids, (int, np.integer)) or extra_ids < 0:
        raise ValueError(f"extra_ids must be a non-negative integer, got {extra_ids!r}.")
    if R.SENTINELS in roles and not extra_ids:
        raise ValueError("The role map declares sentinels but extra_ids=0: pass extra_ids > 0 (T5 uses 100).")


def train_tokenizer(
    kind: str,
    texts: Iterable[str],
    vocab_size: int,
    *,
    special_tokens: Sequence[str] | None = None,
    roles: Mapping[str, str] | None = None,
    template: str | None = "auto",
    lowercase: bool | None = None,
    keep_accents: bool | None = None,
    keep_newlines: bool = False,
    extra_ids: int = 0,
) -> tokenizers.Tokenizer:
    """Trains a tokenizer of the given kind on ``texts``; the same texts always give the same tokenizer.

    Args:
      kind: One of :data:`KINDS`.
      texts: Documents; sentences inside a document are separated by ``"\\n"`` and trained on one by one
        (whole documents, newlines included, with ``keep_newlines``).
      vocab_size: Upper bound on the vocabulary size, special tokens and sentinels included. A small corpus may
        run out of merges / pieces and give fewer entries: size the model with ``tok.get_vocab_size()``.
      special_tokens: Special tokens in id order. ``None``: the kind's first family's (see
        :data:`KIND_DEFAULTS`), which also supplies ``roles`` when those are ``None``.
      roles: Role → token (every token must be in ``special_tokens``). ``None`` with ``special_tokens`` given:
        inferred from the tokens' spellings (:func:`~llm_jax.data.tokenizers.roles.infer_roles`).
      template: One of :data:`TEMPLATES`, ``None`` for no special tokens around segments, or ``"auto"``
        (:func:`auto_template`: the layout of the family whose role tokens these are).
      lowercase: Lower-case (WordPiece also strips accents, as BERT-uncased does). ``None``: the kind's default
        (True for WordPiece and GPT-1 BPE; False otherwise: pass True for ALBERT, or use its spec).
      keep_accents: Unigram only; ``False`` applies ALBERT/XLNet's ``preprocess_text`` (quotes, accents
        dropped). ``None``: True, plain SentencePiece (T5).
      keep_newlines: Byte-level BPE only: learn ``"\\n"`` as text, as GPT-2 does; encode with
        ``tokenize_documents(..., keep_newlines=True)``.
      extra_ids: Unigram only: number of T5 sentinels ``<extra_id_i>`` appended at the end of the vocabulary.

    Returns:
      A ``tokenizers.Tokenizer`` whose post-processor adds the template's special tokens when
      ``add_special_tokens=True``.

    Raises:
      ValueError: Unknown ``kind`` or template, no text, inconsistent special tokens / roles, an option the kind
        does not have, or a ``vocab_size`` too small to hold the alphabet.
      TypeError: ``texts`` is a single string.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown tokenizer kind {kind!r}: choose one of {', '.join(KINDS)}.")
    if isinstance(texts, str):
        raise TypeError("train_tokenizer takes an iterable of documents, not a single string: wrap it in a list.")
    if not isinstance(vocab_size, (int, np.integer)) or isinstance(vocab_size, bool) or vocab_size <= 0:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}.")
    default = KIND_DEFAULTS[kind]
    if special_tokens is None:
        special_tokens, roles = default.special_tokens, default.roles if roles is None else roles
    specials = tuple(special_tokens)
    if roles is None:
        probe = tokenizers.Tokenizer(models.WordLevel({t: i for i, t in enumerate(specials)}))
        roles = R.infer_roles(probe)
    roles = dict(roles)
    lowercase = default.lowercase if lowercase is None else lowercase
    keep_accents = default.keep_accents if keep_accents is None else keep_accents
    _check_settings(kind, specials, roles, keep_newlines, extra_ids)
    if kind == "gpt1_bpe" and not lowercase:
        raise ValueError("GPT-1's BPE always lower-cases (transformers' OpenAIGPTTokenizer does too): drop "
                         "lowercase=False, or use kind='bytelevel_bpe' for a cased BPE.")
    # Materialized because the WordPiece and GPT-1 paths read the text twice (alphabet, then training).
    docs = [t for t in texts if t.strip()] if keep_newlines else list(_sentences(texts))
    if not docs:
        raise ValueError("Cannot train a tokenizer on empty text: every document given was blank.")
    size, unk = int(vocab_size), roles.get("unk")
    if kind == "wordpiece":
        tok = train_wordpiece(docs, size, specials, unk, lowercase)
    elif kind == "bytelevel_bpe":
        tok = train_bytelevel_bpe(docs, size, specials, lowercase, roles.get("mask"))
    elif kind == "gpt1_bpe":
        tok = train_gpt1_bpe(docs, size, specials, unk)
    elif kind == "unigram":
        tok = train_unigram(docs, size, specials, unk, lowercase=lowercase, keep_accents=keep_accents,
                            extra_ids=int(extra_ids))
    else:
        tok = train_wordlevel(docs, size, specials, unk, lowercase)
    set_template(tok, auto_template(kind, roles) if template == "auto" else template, roles)
    return tok


def _has_type(component: dict | None, name: str) -> bool:
    """Whether a tokenizer.json component (or one inside its Sequence) is of type ``name``."""
    if not component:
        return False
    inner = component.get("pretokenizers") or component.get("normalizers") or component.get("processors") or []
    return component.get("type") == name or any(_has_type(c, name) for c in inner)


def tokenizer_kind(tok: tokenizers.Tokenizer) -> str:
    """The kind (:data:`KINDS`) of a tokenizer: ours, or one loaded from a Hugging Face checkpoint.

    Raises:
      ValueError: A model type none of the kinds uses (e.g. a BPE without byte-level or ``</w>`` handling).
    """
    data = json.loads(tok.to_str())
    model = data["model"]
    kind = {"WordPiece": "wordpiece", "Unigram": "unigram", "WordLevel": "wordlevel"}.get(model["type"])
    if kind is None and model["type"] == "BPE":
        if _has_type(data.get("pre_tokenizer"), "ByteLevel"):
            kind = "bytelevel_bpe"
        elif model.get("end_of_word_suffix") == END_OF_WORD:
            kind = "gpt1_bpe"
    if kind is None:
        raise ValueError(f"This {model['type']} tokenizer is none of the kinds {', '.join(KINDS)}; train one with "
                         f"train_tokenizer or load a checkpoint of a supported family.")
    return kind


__all__ = [
    "ALBERT_SPECIALS",
    "ALBERT_TOKENIZER",
    "BERT_TOKENIZER",
    "BYTELEVEL_BPE_SPECIALS",
    "GPT1_SPECIALS",
    "GPT1_TOKENIZER",
    "GPT2_SPECIALS",
    "GPT2_TOKENIZER",
    "KINDS",
    "KIND_DEFAULTS",
    "ROBERTA_TOKENIZER",
    "T5_SPECIALS",
    "T5_TOKENIZER",
    "TEMPLATES",
    "TRANSFO_XL_SPECIALS",
    "TRANSFO_XL_TOKENIZER",
    "WORDPIECE_SPECIALS",
    "XLNET_SPECIALS",
    "XLNET_TOKENIZER",
    "TokenizerSpec",
    "set_template",
    "template_roles",
    "tokenizer_kind",
    "train_tokenizer",
]

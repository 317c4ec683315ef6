"""Special-token roles: which token a family uses for padding, sequence start, separation, masking, ….

A *role map* (role → token string) is declared by each family, with the exact strings of the Hugging Face
tokenizer of the published model, and turned into ids with :func:`special_ids`. Roles:

=========== ==================================================================================================
``pad``     padding, ignored by attention and losses
``unk``     out-of-vocabulary token
``bos``     start of a sequence for causal models (HF ``bos_token``)
``eos``     end of a sequence (HF ``eos_token``; T5 closes every input and target with it)
``cls``     classifier token (BERT ``[CLS]`` first, XLNet ``<cls>`` last)
``sep``     segment separator (BERT ``[SEP]``, RoBERTa ``</s>``, XLNet ``<sep>``)
``mask``    the masked-LM mask token
``eod``     end of document in a stream of documents (GPT-2 ``<|endoftext|>``, XLNet ``<eod>``)
=========== ==================================================================================================

plus ``sentinels``: T5's span-corruption sentinels, declared as a pattern (``"<extra_id_{i}>"``), whose ids are
returned in sentinel order (Raffel et al., 2020, §3.1.4).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping

import tokenizers

ROLES = ("pad", "unk", "bos", "eos", "cls", "sep", "mask", "eod")
SENTINELS = "sentinels"


def _frozen(mapping: dict[str, str]) -> Mapping[str, str]:
    return types.MappingProxyType(mapping)


# Role maps with the token strings of each model's Hugging Face tokenizer (its special_tokens_map.json), listed so
# that the tokens' first appearances follow the published vocabulary's id order.
# bert-base-uncased (BertTokenizer).
BERT_ROLES = _frozen({"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"})
# roberta-base (RobertaTokenizer): <s> starts and </s> separates, as bos/cls and eos/sep.
ROBERTA_ROLES = _frozen({"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "cls": "<s>", "sep": "</s>",
                         "mask": "<mask>"})
# openai-gpt (OpenAIGPTTokenizer): only an unknown token; fine-tuning adds its own start/delimiter/extract tokens.
GPT1_ROLES = _frozen({"unk": "<unk>"})
# gpt2 (GPT2Tokenizer): one token for start, end, unknown and document boundary; no padding token.
GPT2_ROLES = _frozen({"bos": "<|endoftext|>", "eos": "<|endoftext|>", "unk": "<|endoftext|>",
                      "eod": "<|endoftext|>"})
# albert-base-v2 (AlbertTokenizer): BERT's bracketed cls/sep/mask with SentencePiece's <pad>/<unk>.
ALBERT_ROLES = _frozen({"pad": "<pad>", "unk": "<unk>", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]",
                        "bos": "[CLS]", "eos": "[SEP]"})
# xlnet-base-cased (XLNetTokenizer): <unk>=0 <s>=1 </s>=2 <cls>=3 <sep>=4 <pad>=5 <mask>=6 <eod>=7 <eop>=8.
XLNET_ROLES = _frozen({"unk": "<unk>", "bos": "<s>", "eos": "</s>", "cls": "<cls>", "sep": "<sep>", "pad": "<pad>",
                       "mask": "<mask>", "eod": "<eod>"})
# t5-small (T5Tokenizer): <pad>=0 </s>=1 <unk>=2, sentinels <extra_id_0..99> at the end of the vocabulary.
T5_ROLES = _frozen({"pad": "<pad>", "eos": "</s>", "unk": "<unk>", SENTINELS: "<extra_id_{i}>"})
# transfo-xl-wt103 (TransfoXLTokenizer): <eos> ends every line of the corpus.
TRANSFO_XL_ROLES = _frozen({"eos": "<eos>", "unk": "<unk>"})

# Exact spellings tried, in order, when no role map is given: the families above, most specific first.
_INFERRED = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>", "<|endoftext|>"),
    "bos": ("<s>", "<|endoftext|>"),
    "eos": ("</s>", "<|endoftext|>", "<eos>"),
    "mask": ("[MASK]", "<mask>"),
    "eod": ("<eod>", "<|endoftext|>"),
}
# cls and sep are inferred as a pair, so that XLNet's vocabulary (which also has <s> and </s>) gives <cls>/<sep>
# and never a mix of two conventions.
_INFERRED_CLS_SEP = (("<cls>", "<sep>"), ("[CLS]", "[SEP]"), ("<s>", "</s>"))
_T5_SENTINEL = T5_ROLES[SENTINELS]


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    """Ids of a tokenizer's special tokens, by role (``None``: the vocabulary has no token for that role).

    Attributes:
      pad: Padding (ignored by attention and losses).
      unk: Unknown token.
      cls: Classifier token (``[CLS]`` / ``<s>`` / ``<cls>``).
      sep: Segment separator (``[SEP]`` / ``</s>`` / ``<sep>``).
      mask: The MLM mask token (``[MASK]`` / ``<mask>``).
      bos: Start of sequence (``<s>``, GPT-2's ``<|endoftext|>``).
      eos: End of sequence (``</s>``, ``<eos>``, ``<|endoftext|>``).
      eod: End of document in a document stream (``<|endoftext|>``, ``<eod>``).
      sentinels: T5's sentinel ids, ``sentinels[i]`` is ``<extra_id_i>``; empty when there are none.
    """

    pad: int | None = None
    unk: int | None = None
    cls: int | None = None
    sep: int | None = None
    mask: int | None = None
    bos: int | None = None
    eos: int | None = None
    eod: int | None = None
    sentinels: tuple[int, ...] = ()

    def as_tuple(self) -> tuple[int | None, int | None, int | None, int | None, int | None]:
        """Returns ``(pad, unk, cls, sep, mask)``, the BERT-style roles (``None`` where absent)."""
        return (self.pad, self.unk, self.cls, self.sep, self.mask)

    def ids(self) -> frozenset[int]:
        """Every id that has a role, sentinels included."""
        found = {getattr(self, role) for role in ROLES} | set(self.sentinels)
        return frozenset(i for i in found if i is not None)

    def require(self, *roles: str, purpose: str) -> SpecialIds:
        """Returns ``self`` when every role in ``roles`` has an id; else raises naming the missing ones.

        Args:
          *roles: Role names (see the module docstring), e.g. ``"pad", "mask"``.
          purpose: What needs them, for the message, e.g. ``"the MLM objective"``.

        Returns:
          ``self``, so that ``special = special_ids(tok).require("mask", purpose=...)`` reads as one step.

        Raises:
          ValueError: An unknown role name, or roles without a token in this vocabulary.
        """
        unknown = [r for r in roles if r not in ROLES and r != SENTINELS]
        if unknown:
            raise ValueError(f"Unknown special-token role(s) {', '.join(unknown)}: choose from "
                             f"{', '.join(ROLES)} or {SENTINELS}.")
        missing = [r for r in roles if getattr(self, r) in (None, ())]
        if missing:
            raise ValueError(
                f"{purpose} needs the special token role(s) {', '.join(missing)}, which this tokenizer lacks: use a "
                f"tokenizer whose vocabulary has them (train_tokenizer(..., special_tokens=..., roles=...)) or "
                f"pick a purpose this family's tokenizer supports.")
        return self


def _sentinel_ids(tok: tokenizers.Tokenizer, pattern: str) -> tuple[int, ...]:
    """Ids of ``pattern.format(i=0)``, ``pattern.format(i=1)``, … up to the first one missing."""
    found = []
    while (token_id := tok.token_to_id(pattern.format(i=len(found)))) is not None:
        found.append(token_id)
    return tuple(found)


def infer_roles(tok: tokenizers.Tokenizer) -> dict[str, str]:
    """Role → token string for a vocabulary without a declared role map, from exact spellings.

    Each role takes the first of its known spellings that the vocabulary has (BERT's, then RoBERTa's / the
    SentencePiece families', then GPT-2's); ``cls``/``sep`` are taken as a pair, XLNet's ``<cls>``/``<sep>``
    first. Roles with no spelling in the vocabulary are left out.

    Args:
      tok: The tokenizer.

    Returns:
      The role map, with ``"sentinels": "<extra_id_{i}>"`` when ``<extra_id_0>`` is in the vocabulary.
    """
    roles: dict[str, str] = {}
    for role, candidates in _INFERRED.items():
        hit = next((c for c in candidates if tok.token_to_id(c) is not None), None)
        if hit is not None:
            roles[role] = hit
    for cls, sep in _INFERRED_CLS_SEP:
        if tok.token_to_id(cls) is not None and tok.token_to_id(sep) is not None:
            roles["cls"], roles["sep"] = cls, sep
            break
    if _sentinel_ids(tok, _T5_SENTINEL):
        roles[SENTINELS] = _T5_SENTINEL
    return roles


def check_role_map(roles: Mapping[str, str]) -> None:
    """Raises ValueError on an unknown role name, a non-string token, or a sentinel pattern without ``{i}``."""
    for role, token in roles.items():
        if role not in ROLES and role != SENTINELS:
            raise ValueError(f"Unknown special-token role {role!r} in the role map: use {', '.join(ROLES)} or "
                             f"{SENTINELS}.")
        if not isinstance(token, str) or not token:
            raise ValueError(f"The role map gives {role!r} the token {token!r}; give a non-empty token string.")
    pattern = roles.get(SENTINELS)
    if pattern is not None and "{i}" not in pattern:
        raise ValueError(f"The sentinel pattern {pattern!r} has no '{{i}}' for the sentinel index; write e.g. "
                         f"'<extra_id_{{i}}>'.")


def special_ids(tok: tokenizers.Tokenizer, roles: Mapping[str, str] | None = None) -> SpecialIds:
    """Looks up the ids of a tokenizer's special tokens.

    Args:
      tok: The tokenizer.
      roles: Role → token string, as the family declares it (e.g. :data:`XLNET_ROLES`); each token is looked up
        exactly. ``None`` infers the map from the vocabulary with :func:`infer_roles` (BERT, RoBERTa, XLNet,
        ALBERT, T5, GPT-2 and Transformer-XL spellings) and leaves roles it cannot find as ``None``.

    Returns:
      The ids; roles the map does not name are ``None`` (``sentinels`` empty).

    Raises:
      ValueError: A declared token is not in the vocabulary, or the role map is malformed.
    """
    if roles is None:
        roles = infer_roles(tok)
    check_role_map(roles)
    found: dict[str, object] = {}
    for role, token in roles.items():
        if role == SENTINELS:
            ids = _sentinel_ids(tok, token)
            if not ids:
                raise ValueError(f"The role map declares sentinels {token!r} but the vocabulary has no "
                                 f"{token.format(i=0)!r}: train the tokenizer with extra_ids > 0 or drop the role.")
            found[role] = ids
            continue
        token_id = tok.token_to_id(token)
        if token_id is None:
            raise ValueError(f"The role map gives {role!r} the token {token!r}, which is not in the tokenizer's "
                             f"vocabulary: train it with that special token (train_tokenizer(..., special_tokens=...)) "
                             f"or fix the role map.")
        found[role] = token_id
    return SpecialIds(**found)


__all__ = [
    "ALBERT_ROLES",
    "BERT_ROLES",
    "GPT1_ROLES",
    "GPT2_ROLES",
    "ROBERTA_ROLES",
    "ROLES",
    "SENTINELS",
    "T5_ROLES",
    "TRANSFO_XL_ROLES",
    "XLNET_ROLES",
    "SpecialIds",
    "check_role_map",
    "infer_roles",
    "special_ids",
]

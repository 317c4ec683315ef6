"""How a family lays out a fine-tuning input (`InputFormat`, part of the family contract) and the tokenizer a
fine-tuning run encodes its task with (`finetuning_tokenizer`).

Each family's `INPUT_FORMAT` (`llm_jax.models.family`) says, without naming the family:

* which side it pads: `right`, or `left` (XLNet, so that its last-position `<cls>` is the last position of every
  row);
* whether its sequence classifier reads a *classifier token* that the tokenizer's template adds (BERT's `[CLS]`,
  RoBERTa's `<s>`, XLNet's `<cls>`, GPT-1's extract token), or the last real token of plain text (GPT-2/3, as
  Hugging Face's `GPT2ForSequenceClassification`);
* the *task tokens* fine-tuning adds to the vocabulary when the tokenizer lacks them, and the template that wraps
  every task input in them. GPT-1 (Radford et al. 2018 §3.3, Figure 1) fine-tunes on "a traversal-style approach,
  where we convert structured inputs into an ordered sequence": `start text extract` for a text,
  `start premise delim hypothesis extract` for a pair, `start context delim answer extract` for each choice;
  "all transformations include adding randomly initialized start and end tokens";
* whether a *symmetric* pair (a similarity task, `TaskSpec.symmetric`: "there is no inherent ordering of the two
  sentences being compared") is encoded in both orders, each order run through the model and the two sequence
  representations added element-wise before the output layer (GPT-1 §3.3). The rows then have a second axis of
  2 (`[N, 2, T]`), which `llm_jax.models.heads.ForTask` reads as the two orders.

Token ids of added tokens follow the tokenizer's vocabulary (`tokenizers.Tokenizer.add_special_tokens`), so the
model's token table grows by as many rows (`llm_jax.models.heads.transplant_trunk` keeps the new rows of the
freshly initialised model).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import tokenizers

from llm_jax.data.tokenizers.kinds import TEMPLATES, set_template
from llm_jax.data.tokenizers.roles import ROLES, infer_roles

PAD_SIDES = ("right", "left")
# When a family's role map has no padding token, rows are padded with its end-of-text token (Hugging Face's
# `tokenizer.pad_token = tokenizer.eos_token` for GPT-2), else its unknown token: padded positions are masked out
# of attention and never read, so any id in the vocabulary serves.
PAD_FALLBACK_ROLES = ("pad", "eod", "eos", "unk")


@dataclasses.dataclass(frozen=True)
class InputFormat:
    """How a family lays out a task input (see the module docstring).

    Attributes:
      pad_side: `right`, or `left` (XLNet).
      classifier_token: the sequence classifier reads a token that the tokenizer's template adds; task encoding
        refuses a tokenizer without a template. False: it reads the last real token of plain text (GPT-2/3).
      task_tokens: `(role, token)` pairs (roles of `llm_jax.data.tokenizers.roles`) that fine-tuning uses: a token
        the tokenizer lacks is added to its vocabulary (GPT-1's `bos` start, `sep` delimiter and `cls` extract
        tokens); the rest of the roles come from the family's tokenizer spec.
      template: the template (`llm_jax.data.tokenizers.TEMPLATES`) fine-tuning wraps task inputs in, over the
        family's roles and `task_tokens`; None = the tokenizer's own.
      both_orders: encode symmetric pairs in both orders and sum the two representations (GPT-1 §3.3). The
        family's trunk output then has `pooled_BD`, the representation its `sequence_head` reads.
    """

    pad_side: str = "right"
    classifier_token: bool = True
    task_tokens: tuple[tuple[str, str], ...] = ()
    template: str | None = None
    both_orders: bool = False

    def __post_init__(self):
        if self.pad_side not in PAD_SIDES:
            raise ValueError(f"InputFormat(pad_side={self.pad_side!r}): choose one of {PAD_SIDES}.")
        if self.template is not None and self.template not in TEMPLATES:
            raise ValueError(f"InputFormat(template={self.template!r}): choose one of {TEMPLATES}, or None.")
        unknown = [role for role, _ in self.task_tokens if role not in ROLES]
        if unknown:
            raise ValueError(f"InputFormat(task_tokens=...) names the roles {unknown}; use roles of {ROLES}.")


def pad_id(tok: tokenizers.Tokenizer, roles: Mapping[str, str] | None = None) -> int:
    """The id task rows are padded with: the role map's `pad`, else the first of `PAD_FALLBACK_ROLES` whose token
    the vocabulary has.

    Args:
      tok: the tokenizer.
      roles: the family's role map (its `TOKENIZER.roles`, plus its task tokens); None = inferred from the
        vocabulary's spellings (`infer_roles`).

    Raises:
      ValueError: none of those roles has a token in the vocabulary.
    """
    roles = infer_roles(tok) if roles is None else roles
    for role in PAD_FALLBACK_ROLES:
        token = roles.get(role)
        if token is not None and tok.token_to_id(token) is not None:
            return tok.token_to_id(token)
    raise ValueError(f"Padding task examples needs one of the roles {PAD_FALLBACK_ROLES} in the vocabulary, and the "
                     f"role map {dict(roles)} has none: use the tokenizer the model was trained with.")


@dataclasses.dataclass
class FinetuningTokenizer:
    """A tokenizer ready to encode a family's task inputs.

    Attributes:
      tokenizer: a copy of the model's tokenizer with the format's task tokens and template.
      roles: the family's role map with the task tokens, restricted to tokens in the vocabulary.
      added: the task tokens added to the vocabulary here, in id order (their ids follow the old vocabulary).
    """

    tokenizer: tokenizers.Tokenizer
    roles: dict[str, str]
    added: tuple[str, ...]


def finetuning_tokenizer(tok: tokenizers.Tokenizer, fmt: InputFormat,
                         family_roles: Mapping[str, str]) -> FinetuningTokenizer:
    """The model's tokenizer made ready for task inputs: the format's task tokens added where the vocabulary lacks
    them (as special tokens, so text that spells them is never split into them by accident), and the format's
    template set. The caller's tokenizer is left untouched; a tokenizer that already has every task token (one
    saved by an earlier fine-tuning run) gets the same ids again.

    Args:
      tok: the model's tokenizer.
      fmt: the family's `INPUT_FORMAT`.
      family_roles: the family's `TOKENIZER.roles`.

    Raises:
      ValueError: the template needs a role that neither the family's roles nor the task tokens give.
    """
    out = tokenizers.Tokenizer.from_str(tok.to_str())
    task = dict(fmt.task_tokens)
    missing = [token for token in dict.fromkeys(task.values()) if out.token_to_id(token) is None]
    if missing:
        out.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in missing])
    roles = {role: token for role, token in {**dict(family_roles), **task}.items()
             if isinstance(token, str) and "{i}" not in token and out.token_to_id(token) is not None}
    if fmt.template is not None:
        set_template(out, fmt.template, roles)
    return FinetuningTokenizer(out, roles, tuple(missing))


__all__ = ["PAD_FALLBACK_ROLES", "PAD_SIDES", "FinetuningTokenizer", "InputFormat", "finetuning_tokenizer", "pad_id"]

"""Fine-tuning heads on any encoder family, and the model that puts a family's trunk under one of them.

BERT §4 fine-tunes by adding one small output layer on the pretrained encoder and training everything end to
end. The heads here follow Hugging Face's task models layer for layer, so that their fine-tuned checkpoints can
be mapped later and the numerics match:

| kind | input | head (HF class) | output |
|---|---|---|---|
| `classification` | `[B, T]` | sentence representation → dropout → dense C (`*ForSequenceClassification`) | `logits_BC` |
| `regression` | `[B, T]` | the same with C = 1 (HF: `num_labels=1`, MSE) | `logits_BC` (`[B, 1]`) |
| `token_classification` | `[B, T]` | dropout → dense C on every token (`*ForTokenClassification`) | `logits_BTC` |
| `span` | `[B, T]` | dense 2 on every token, no dropout (`*ForQuestionAnswering`, BERT §4.2) | `start_logits_BT`, `end_logits_BT` |
| `multiple_choice` | `[B, N, T]` | pooler → dropout → dense 1 per choice (`*ForMultipleChoice`, BERT §4.4) | `logits_BN` |

A classification or regression input of shape `[B, 2, T]` is a symmetric pair in both orders (GPT-1 §3.3,
"Similarity": `llm_jax.data.input_format`): each order runs through the trunk, and the two sequence
representations (`pooled_BD` of the trunk output) are added element-wise before the family's `sequence_head`.
`ForTask(..., with_lm_logits=True)` also returns the next-token logits of every row from a causal family's tied
LM head (`trunk.attend`), for the auxiliary LM loss of GPT-1's fine-tuning (§3.2).

The *sentence representation* is the family's choice (`sequence_head` in its file, see `models/family.py`):
BERT reads its pooler, `tanh(W · h_[CLS] + b)`, pretrained by NSP; RoBERTa, which has no NSP and so no
pretrained pooler, uses HF's `RobertaClassificationHead` (dropout → dense D → tanh → dropout → out_proj on `<s>`).
The trunk comes from the family's `build_trunk(cfg, kind)` under the name `TRUNK_NAME` (the param subtree of its
pretraining model), so `transplant_trunk` copies pretrained weights into a fine-tuning model by path.
"""

from __future__ import annotations

import logging
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from llm_jax import models
from llm_jax.layers import Einsum
from llm_jax.sharding import P_EMBED

log = logging.getLogger(__name__)

KINDS = ("classification", "regression", "token_classification", "span", "multiple_choice")


@flax.struct.dataclass
class TaskOutput:
    """What `ForTask` returns; only the field of its kind is set (N = choices of a multiple-choice example)."""

    hidden_BTD: jax.Array
    logits_BC: jax.Array | None = None
    logits_BTC: jax.Array | None = None
    start_logits_BT: jax.Array | None = None
    end_logits_BT: jax.Array | None = None
    logits_BN: jax.Array | None = None
    # With `with_lm_logits`: `[R, T, V]` float32 next-token logits of every row the trunk ran (R = B, or B·N for
    # choices and both orders, in row-major order of the input's leading axes).
    lm_logits_RTV: jax.Array | None = None


def _dense(cfg, eqn: str, d_in: int, d_out: int, name: str) -> Einsum:
    # HF `_init_weights`: normal(initializer_range) kernels, zero biases.
    return Einsum(eqn, (d_in, d_out), (P_EMBED, None), kernel_init=nn.initializers.normal(cfg.initializer_range),
                  dtype=jnp.dtype(cfg.dtype), name=name)


class ForTask(nn.Module):
    """A family's trunk under one task head (see the module docstring for the kinds).

    `__call__(tokens_BT, *, segment_ids_BT, positions_BT, mask_BT, deterministic, with_lm_logits)` follows the
    model contract; for `multiple_choice` every input is `[B, N, T]` (each choice encoded with the shared context),
    for a symmetric pair in both orders `[B, 2, T]` (classification / regression). `with_lm_logits=True` also
    returns `lm_logits_RTV` from the trunk's `attend` (causal families' tied LM head).

    Attributes:
      family: registered family name (`bert`, `roberta`, ...).
      cfg: the family's Config.
      kind: one of `KINDS`.
      num_labels: C (classes or tags); ignored for `regression` (1), `span` (2) and `multiple_choice` (1 per
        choice).
      classifier_dropout: dropout before the output layer (HF `classifier_dropout`); None = `cfg.hidden_dropout`.
    """

    family: str
    cfg: Any
    kind: str
    num_labels: int = 2
    classifier_dropout: float | None = None

    @nn.compact
    def __call__(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                 deterministic: bool = True, with_lm_logits: bool = False) -> TaskOutput:
        if self.kind not in KINDS:
            raise ValueError(f"Unknown task kind {self.kind!r}; choose one of {KINDS}.")
        cfg = self.cfg
        fam = models.family_module(self.family)
        dropout = cfg.hidden_dropout if self.classifier_dropout is None else self.classifier_dropout
        kw = dict(segment_ids_BT=segment_ids_BT, positions_BT=positions_BT, mask_BT=mask_BT)
        trunk = fam.build_trunk(cfg, self.kind, name=fam.TRUNK_NAME)
        both_orders = tokens_BT.ndim == 3 and self.kind in ("classification", "regression")
        if both_orders and tokens_BT.shape[1] != 2:
            raise ValueError(f"A {self.kind} input of shape {tokens_BT.shape} is read as a symmetric pair in both "
                             "orders and needs exactly 2 rows per example ([B, 2, T]).")

        def with_lm(task_out: TaskOutput, out) -> TaskOutput:
            if not with_lm_logits:
                return task_out
            if fam.LM_KIND != "causal":
                raise ValueError(f"The auxiliary LM loss reads a causal LM head; {self.family} is a {fam.LM_KIND} "
                                 "LM. Set train.aux_lm_weight=0.")
            return task_out.replace(lm_logits_RTV=trunk.attend(out.hidden_BTD).astype(jnp.float32))

        if self.kind == "multiple_choice" or both_orders:
            # BERT §4.4 (SWAG) / GPT-1 §3.3: each (context, choice) pair is a sequence, one score per choice,
            # softmax over the N choices. Similarity: each order is a sequence; their representations are summed.
            b, n, t = tokens_BT.shape
            flat = {k: (None if v is None else v.reshape(b * n, t)) for k, v in kw.items()}
            out = trunk(tokens_BT.reshape(b * n, t), deterministic=deterministic, **flat)
            if both_orders:
                summed = out.replace(pooled_BD=out.pooled_BD.reshape(b, n, -1).sum(axis=1))
                c = 1 if self.kind == "regression" else self.num_labels
                logits_BC = fam.sequence_head(cfg, summed, kind=self.kind, num_outputs=c, dropout=dropout,
                                              deterministic=deterministic)
                return with_lm(TaskOutput(hidden_BTD=out.hidden_BTD, logits_BC=logits_BC.astype(jnp.float32)), out)
            scores = fam.sequence_head(cfg, out, kind=self.kind, num_outputs=1, dropout=dropout,
                                       deterministic=deterministic)
            return with_lm(TaskOutput(hidden_BTD=out.hidden_BTD, logits_BN=scores.reshape(b, n).astype(jnp.float32)),
                           out)

        out = trunk(tokens_BT, deterministic=deterministic, **kw)
        if self.kind in ("classification", "regression"):
            c = 1 if self.kind == "regression" else self.num_labels
            logits_BC = fam.sequence_head(cfg, out, kind=self.kind, num_outputs=c, dropout=dropout,
                                          deterministic=deterministic)
            # Why f32: the loss's softmax / squared error is computed in full precision (DESIGN.md §5.9).
            return with_lm(TaskOutput(hidden_BTD=out.hidden_BTD, logits_BC=logits_BC.astype(jnp.float32)), out)
        d = cfg.width
        if self.kind == "token_classification":
            x_BTD = nn.Dropout(dropout)(out.hidden_BTD, deterministic=deterministic)
            logits_BTC = _dense(cfg, "BTD,DC->BTC", d, self.num_labels, "classifier")(x_BTD)
            return with_lm(TaskOutput(hidden_BTD=out.hidden_BTD, logits_BTC=logits_BTC.astype(jnp.float32)), out)
        # span: BERT §4.2, a start vector S and an end vector E scored against every token (HF `qa_outputs`).
        logits_BT2 = _dense(cfg, "BTD,DC->BTC", d, 2, "qa_outputs")(out.hidden_BTD).astype(jnp.float32)
        return with_lm(TaskOutput(hidden_BTD=out.hidden_BTD, start_logits_BT=logits_BT2[..., 0],
                                  end_logits_BT=logits_BT2[..., 1]), out)


def build(family: str, config, kind: str, num_labels: int = 2, classifier_dropout: float | None = None) -> ForTask:
    """The fine-tuning model of `family` for a task `kind` (validates the config and the kind)."""
    if kind not in KINDS:
        raise ValueError(f"Unknown task kind {kind!r}; choose one of {KINDS}.")
    if kind in ("classification", "token_classification") and num_labels < 2:
        raise ValueError(f"A {kind} task needs num_labels ≥ 2 (got {num_labels}); use kind='regression' for one "
                         "real-valued output.")
    models.family_module(family)  # an unknown family is an error here, not inside init
    return ForTask(family, config.validate(), kind, num_labels, classifier_dropout)


def transplant_trunk(family: str, init_params: dict, pretrained_params: dict,
                     vocab_sizes: tuple[int, int] | None = None) -> tuple[dict, list[str]]:
    """Copies the pretrained trunk into a freshly initialised fine-tuning model's params.

    Every leaf under `TRUNK_NAME` that the pretrained params have is copied; leaves they lack (e.g. RoBERTa's
    pooler, which its MLM model does not have, used by the multiple-choice head) keep their initialisation and
    are returned (and logged). The task head is never copied: it is new (BERT §4).

    A vocabulary grown for fine-tuning (GPT-1's start / delimiter / extract tokens, `vocab_sizes=(V_old, V_new)`)
    copies the V_old pretrained rows of every table with a vocabulary axis and keeps the freshly initialised
    rows after them: the family's own initialiser, N(0, 0.02²) for GPT-1 as in the original fine-tuning code
    ("randomly initialized start and end tokens", §3.3).

    Args:
      family: the family name.
      init_params: params of the `ForTask` model (unboxed).
      pretrained_params: params of the family's pretraining model (or of another `ForTask` model).
      vocab_sizes: `(V_old, V_new)` when the fine-tuning model's vocabulary grew from the pretrained one's.

    Returns:
      `(params, newly_initialised_paths)`.

    Raises:
      ValueError: the pretrained params have no trunk, or a trunk leaf has another shape (a different
        architecture: say which).
    """
    name = models.family_module(family).TRUNK_NAME
    if name not in pretrained_params:
        raise ValueError(f"The pretrained params have no {name!r} subtree (top-level keys: "
                         f"{sorted(pretrained_params)}); they do not hold a {family} trunk.")
    ours = traverse_util.flatten_dict(init_params[name], sep="/")
    theirs = traverse_util.flatten_dict(pretrained_params[name], sep="/")
    merged, fresh = {}, []
    for path, value in ours.items():
        if path not in theirs:
            merged[path] = value
            fresh.append(f"{name}/{path}")
            continue
        grown = _grown_vocab_axis(np.shape(theirs[path]), np.shape(value), vocab_sizes)
        if grown is not None:
            old = jnp.asarray(theirs[path], dtype=jnp.asarray(value).dtype)
            merged[path] = jax.lax.dynamic_update_slice_in_dim(jnp.asarray(value), old, 0, axis=grown)
            fresh.append(f"{name}/{path} (rows {vocab_sizes[0]}…{vocab_sizes[1] - 1})")
            continue
        if tuple(np.shape(theirs[path])) != tuple(np.shape(value)):
            raise ValueError(f"Pretrained {name}/{path} has shape {tuple(np.shape(theirs[path]))} but the model "
                             f"expects {tuple(np.shape(value))}: the checkpoint's architecture differs from the "
                             "fine-tuning config (do not override model sizes when starting from a checkpoint).")
        merged[path] = jnp.asarray(theirs[path], dtype=jnp.asarray(value).dtype)
    if fresh:
        log.warning("The pretrained trunk lacks %s; they start from random initialisation.", fresh)
    out = dict(init_params)
    out[name] = traverse_util.unflatten_dict(merged, sep="/")
    return out, fresh


def _grown_vocab_axis(theirs: tuple, ours: tuple, vocab_sizes: tuple[int, int] | None) -> int | None:
    """The axis on which a pretrained leaf has V_old entries where the model has V_new (all else equal), or None."""
    if vocab_sizes is None or vocab_sizes[0] == vocab_sizes[1] or len(theirs) != len(ours):
        return None
    differ = [i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b]
    if len(differ) == 1 and (theirs[differ[0]], ours[differ[0]]) == tuple(vocab_sizes):
        return differ[0]
    return None


__all__ = ["KINDS", "ForTask", "TaskOutput", "build", "transplant_trunk"]

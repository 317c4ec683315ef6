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

The *sentence representation* is the family's choice, declared in its file as `SEQUENCE_HEAD`:

* `"pooler"` (BERT): the trunk's pooler, `tanh(W · h_[CLS] + b)`, pretrained by NSP;
* `"dense_tanh"` (RoBERTa, which has no NSP and so no pretrained pooler): HF's `RobertaClassificationHead`,
  dropout → dense D → tanh → dropout → out_proj on `<s>`, all trained during fine-tuning.

A family plugs in by exposing `TRUNK` (a module class taking `(cfg, add_pooler=...)` and returning an output
with `hidden_BTD` and `pooled_BD`), `TRUNK_NAME` (the param subtree of its pretraining model that holds the
trunk) and `SEQUENCE_HEAD`. The trunk is built under the name `TRUNK_NAME`, so `transplant_trunk` copies
pretrained weights into a fine-tuning model by path.
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


def _dense(cfg, eqn: str, d_in: int, d_out: int, name: str) -> Einsum:
    # HF `_init_weights`: normal(initializer_range) kernels, zero biases.
    return Einsum(eqn, (d_in, d_out), (P_EMBED, None), kernel_init=nn.initializers.normal(cfg.initializer_range),
                  dtype=jnp.dtype(cfg.dtype), name=name)


class DenseTanhClassifier(nn.Module):
    """RoBERTa: dropout → dense → tanh → dropout → out_proj on the first token (HF `RobertaClassificationHead`)."""

    cfg: Any
    num_labels: int
    dropout: float

    @nn.compact
    def __call__(self, hidden_BTD, deterministic: bool):
        d = self.cfg.hidden_size
        x_BD = nn.Dropout(self.dropout)(hidden_BTD[:, 0], deterministic=deterministic)
        x_BD = jnp.tanh(_dense(self.cfg, "BD,DE->BE", d, d, "dense")(x_BD))
        x_BD = nn.Dropout(self.dropout)(x_BD, deterministic=deterministic)
        return _dense(self.cfg, "BD,DC->BC", d, self.num_labels, "out_proj")(x_BD)


class ForTask(nn.Module):
    """A family's trunk under one task head (see the module docstring for the kinds).

    `__call__(tokens_BT, *, segment_ids_BT, positions_BT, mask_BT, deterministic)` follows the model contract;
    for `multiple_choice` every input is `[B, N, T]` (each choice encoded with the shared context).

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

    def _trunk(self, add_pooler: bool):
        fam = models.family_module(self.family)
        return fam.TRUNK(self.cfg, add_pooler=add_pooler, name=fam.TRUNK_NAME)

    @nn.compact
    def __call__(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                 deterministic: bool = True) -> TaskOutput:
        if self.kind not in KINDS:
            raise ValueError(f"Unknown task kind {self.kind!r}; choose one of {KINDS}.")
        cfg = self.cfg
        fam = models.family_module(self.family)
        dropout = cfg.hidden_dropout if self.classifier_dropout is None else self.classifier_dropout
        kw = dict(segment_ids_BT=segment_ids_BT, positions_BT=positions_BT, mask_BT=mask_BT,
                  deterministic=deterministic)

        if self.kind == "multiple_choice":
            # BERT §4.4 (SWAG): each (context, choice) pair is a sequence; one score per choice from the pooled
            # [CLS]; softmax over the N choices. Both BERT and RoBERTa use the trunk's pooler here (HF).
            b, n, t = tokens_BT.shape
            flat = {k: (None if v is None else v.reshape(b * n, t)) for k, v in kw.items() if k != "deterministic"}
            out = self._trunk(add_pooler=True)(tokens_BT.reshape(b * n, t), deterministic=deterministic, **flat)
            x_BD = nn.Dropout(dropout)(out.pooled_BD, deterministic=deterministic)
            scores = _dense(cfg, "BD,DC->BC", cfg.hidden_size, 1, "classifier")(x_BD)
            return TaskOutput(hidden_BTD=out.hidden_BTD, logits_BN=scores.reshape(b, n).astype(jnp.float32))

        if self.kind in ("classification", "regression"):
            c = 1 if self.kind == "regression" else self.num_labels
            if fam.SEQUENCE_HEAD == "pooler":
                # BERT: dropout on the pooled [CLS] vector, then one dense layer (HF `BertForSequenceClassification`).
                out = self._trunk(add_pooler=True)(tokens_BT, **kw)
                x_BD = nn.Dropout(dropout)(out.pooled_BD, deterministic=deterministic)
                logits_BC = _dense(cfg, "BD,DC->BC", cfg.hidden_size, c, "classifier")(x_BD)
            elif fam.SEQUENCE_HEAD == "dense_tanh":
                out = self._trunk(add_pooler=False)(tokens_BT, **kw)
                logits_BC = DenseTanhClassifier(cfg, c, dropout, name="classifier")(out.hidden_BTD, deterministic)
            else:
                raise ValueError(f"Family {self.family!r} declares SEQUENCE_HEAD={fam.SEQUENCE_HEAD!r}; heads know "
                                 "'pooler' and 'dense_tanh'.")
            # Why f32: the loss's softmax / squared error is computed in full precision (DESIGN.md §5.8).
            return TaskOutput(hidden_BTD=out.hidden_BTD, logits_BC=logits_BC.astype(jnp.float32))

        out = self._trunk(add_pooler=False)(tokens_BT, **kw)
        if self.kind == "token_classification":
            x_BTD = nn.Dropout(dropout)(out.hidden_BTD, deterministic=deterministic)
            logits_BTC = _dense(cfg, "BTD,DC->BTC", cfg.hidden_size, self.num_labels, "classifier")(x_BTD)
            return TaskOutput(hidden_BTD=out.hidden_BTD, logits_BTC=logits_BTC.astype(jnp.float32))
        # span: BERT §4.2, a start vector S and an end vector E scored against every token (HF `qa_outputs`).
        logits_BT2 = _dense(cfg, "BTD,DC->BTC", cfg.hidden_size, 2, "qa_outputs")(out.hidden_BTD).astype(jnp.float32)
        return TaskOutput(hidden_BTD=out.hidden_BTD, start_logits_BT=logits_BT2[..., 0],
                          end_logits_BT=logits_BT2[..., 1])


def build(family: str, config, kind: str, num_labels: int = 2, classifier_dropout: float | None = None) -> ForTask:
    """The fine-tuning model of `family` for a task `kind` (validates the config and the kind)."""
    if kind not in KINDS:
        raise ValueError(f"Unknown task kind {kind!r}; choose one of {KINDS}.")
    if kind in ("classification", "token_classification") and num_labels < 2:
        raise ValueError(f"A {kind} task needs num_labels ≥ 2 (got {num_labels}); use kind='regression' for one "
                         "real-valued output.")
    fam = models.family_module(family)
    for name in ("TRUNK", "TRUNK_NAME", "SEQUENCE_HEAD"):
        if not hasattr(fam, name):
            raise ValueError(f"Family {family!r} does not expose {name}, which the fine-tuning heads need (see "
                             "llm_jax.models.heads).")
    return ForTask(family, config.validate(), kind, num_labels, classifier_dropout)


def transplant_trunk(family: str, init_params: dict, pretrained_params: dict) -> tuple[dict, list[str]]:
    """Copies the pretrained trunk into a freshly initialised fine-tuning model's params.

    Every leaf under `TRUNK_NAME` that the pretrained params have is copied; leaves they lack (e.g. RoBERTa's
    pooler, which its MLM model does not have, used by the multiple-choice head) keep their initialisation and
    are returned (and logged). The task head is never copied: it is new (BERT §4).

    Args:
      family: the family name.
      init_params: params of the `ForTask` model (unboxed).
      pretrained_params: params of the family's pretraining model (or of another `ForTask` model).

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


__all__ = ["KINDS", "DenseTanhClassifier", "ForTask", "TaskOutput", "build", "transplant_trunk"]

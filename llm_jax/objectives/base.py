"""The objective contract and its registry.

An objective turns tokenized documents into training batches (host side, numpy) and a batch into a loss
(device side, pure). Everything the trainer needs to know about it is declared here, so that a new objective is
one file that subclasses `Objective` and decorates itself with `@register`:

| member | what the trainer does with it |
|---|---|
| `name`, `Config` | `objective.name` in a run config picks the class; the section becomes its `Config` |
| `required_roles` | special tokens it needs: asked of the tokenizer before anything compiles |
| `bind_tokenizer(tokenizer)` | reads the vocabulary's pieces where the objective needs them (word boundaries) |
| `build_examples(docs_ids, seq_len, seed, batch_size=B)` | the example pool the deterministic loader serves |
| `data_order` | `"shuffled"` (seeded permutation per epoch) or `"ordered"` (streams read in order: segment models) |
| `prepare(rows, seed)` | loader rows → the model-ready batch (dynamic masks are drawn here) |
| `dummy_batch(B, T)` | shapes and dtypes for abstract init and compilation |
| `init_inputs(batch)` | `(args, kwargs)` for `model.init`: the one helper every init site uses |
| `make_loss(model, frozen_models)` | `loss(params, batch, rng, *, carry, frozen, denominators, deterministic) -> (loss, (metrics, carry))`; metrics include `loss` |
| `loss_denominators(batch)` | the global normalisers (e.g. the number of predicted tokens) of a whole batch |
| `init_carry(B, model_cfg)` | state carried across steps (e.g. Transformer-XL memory), batch-major leaves; `{}` = none |
| `required_models` | frozen models the loss reads (a distillation teacher): `{name: what}` |
| `progress_keys` | metrics the progress bar shows |
| `derived_metrics(metrics)` | ratios computed on the host from logged (averaged) metrics, e.g. precision |
| `predicted_positions(T)`, `heads` | positions per sequence that reach the output layer, heads it reads (FLOPs) |
| `frozen_heads`, `frozen_towers(cfg, T, frozen_configs)` | heads of each required model it reads; their forward-only FLOPs towers |

Gradient accumulation is exact because losses and metrics are normalised by `denominators` computed on the
whole global batch: the micro-batch losses then *sum* to the full-batch loss (and their gradients to its
gradient), whatever the split of predicted tokens between micro-batches (with dropout on, each micro-batch draws
its own masks). So every metric must be such a normalised sum — a mean over the global batch — since the step
adds the micro-batches' values; a ratio such as perplexity is computed from them afterwards. An objective's
`Config()` must validate with its defaults (recipes, `describe` and the exporter build it with none given).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from llm_jax.data.tokenizer import SpecialIds
from llm_jax.layers.embeddings import check_ids

LossFn = Callable[..., tuple[jax.Array, tuple[dict[str, jax.Array], Any]]]

DATA_ORDERS = ("shuffled", "ordered")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfigBase:
    """Fields every objective config has. Subclasses add their own (with their defaults, which live only there).

    Attributes:
      name: the registered objective name.
    """

    name: str = ""

    def validate(self):
        return self


OBJECTIVES: dict[str, type["Objective"]] = {}


def register(cls: type["Objective"]) -> type["Objective"]:
    """Class decorator: adds an objective to `OBJECTIVES` under `cls.name`."""
    if not cls.name or cls.name in OBJECTIVES:
        raise ValueError(f"Objective name {cls.name!r} is empty or registered twice.")
    if cls.data_order not in DATA_ORDERS:
        raise ValueError(f"{cls.__name__}.data_order={cls.data_order!r} is not one of {DATA_ORDERS}.")
    OBJECTIVES[cls.name] = cls
    return cls


def objective_class(name: str) -> type["Objective"]:
    """The registered class for `name`.

    Raises:
      ValueError: an unknown name (the message lists the known ones).
    """
    if name not in OBJECTIVES:
        raise ValueError(f"objective.name={name!r} is not a known objective; choose one of {sorted(OBJECTIVES)}.")
    return OBJECTIVES[name]


def config_for(name: str, **fields):
    """The objective's own config dataclass from keyword fields, unknown fields rejected by name.

    Raises:
      ValueError: an unknown objective or field.
    """
    cls = objective_class(name).Config
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} for objective {name!r}; known keys: {sorted(known)}.")
    return cls(**{"name": name, **fields}).validate()


def default_config(name: str) -> dict[str, Any]:
    """The objective's defaults as a plain dict (what recipes start from)."""
    return dataclasses.asdict(config_for(name))


def make_objective(cfg, special: SpecialIds, vocab_size: int, *, tokenizer=None) -> "Objective":
    """The objective named by `cfg.name`, checked against the tokenizer's special tokens.

    Args:
      tokenizer: the run's `tokenizers.Tokenizer`, handed to `Objective.bind_tokenizer` (objectives that read
        the vocabulary's pieces, e.g. whole-word or n-gram masking, need it before `build_examples`).

    Raises:
      ValueError: an unknown objective, or a special token it needs that the tokenizer lacks.
    """
    cls = objective_class(cfg.name)
    if not isinstance(cfg, cls.Config):
        cfg = config_for(cfg.name, **{k: v for k, v in dataclasses.asdict(cfg).items() if k != "name"})
    objective = cls(cfg.validate(), special, vocab_size)
    if tokenizer is not None:
        objective.bind_tokenizer(tokenizer)
    return objective


SHAPE_ONLY_SENTINELS = 100  # placeholder sentinels of `shape_only_objective` (T5's count)


def shape_only_objective(name: str, vocab_size: int, **fields) -> "Objective":
    """An objective for shapes only — dummy batches and model-init inputs (parameter counts, abstract init,
    compilation) — whose special roles get placeholder ids below `vocab_size`, since no tokenizer is involved: the
    first ids, and for an objective that needs sentinels T5's 100 at the top of the vocabulary."""
    cls = objective_class(name)
    roles = [role for role in cls.required_roles if role != "sentinels"]
    ids: dict[str, Any] = {role: i % vocab_size for i, role in enumerate(roles)}
    if "sentinels" in cls.required_roles:  # T5's 100, `<extra_id_0>` the highest id
        ids["sentinels"] = tuple(range(vocab_size - 1, max(vocab_size - 1 - SHAPE_ONLY_SENTINELS, len(roles) - 1), -1))
    return cls(config_for(name, **fields), SpecialIds(**ids), vocab_size)


def check_token_ids(tokens: np.ndarray, vocab_size: int, field: str = "token ids (model.vocab_size)") -> None:
    """Ids outside `[0, vocab_size)` are a data/tokenizer mismatch: say so on the host, before anything compiles
    (`llm_jax.layers.check_ids`).

    Raises:
      ValueError: naming the field, the range found and the vocabulary size.
    """
    check_ids(tokens, vocab_size, field)


class Objective(abc.ABC):
    """Base class of every objective (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = ObjectiveConfigBase
    data_order: ClassVar[str] = "shuffled"
    required_roles: ClassVar[tuple[str, ...]] = ()
    required_models: ClassVar[Mapping[str, str]] = {}
    progress_keys: ClassVar[tuple[str, ...]] = ("loss", "tokens_per_s")
    heads: ClassVar[tuple[str, ...]] = ()  # output heads of the pretraining model the loss reads (for FLOPs)
    # Output heads of each `required_models` entry the loss reads (for FLOPs); a name not listed reads `heads`.
    frozen_heads: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __init__(self, cfg, special: SpecialIds, vocab_size: int):
        self.cfg = cfg.validate()
        self.special = special.require(*self.required_roles, purpose=f"the {self.name} objective")
        self.vocab_size = vocab_size

    # ------------------------------------------------------------------ host side
    def bind_tokenizer(self, tokenizer) -> None:
        """Reads what the objective needs from the run's tokenizer (e.g. which pieces start a word); the default
        needs nothing. Called by `make_objective(..., tokenizer=...)` before `build_examples`."""
        del tokenizer

    @abc.abstractmethod
    def build_examples(self, docs_ids: list[list[np.ndarray]], seq_len: int, seed: int, *,
                       batch_size: int | None = None) -> dict[str, np.ndarray]:
        """The example pool from tokenized documents (each a list of sentence id arrays).

        With `data_order="ordered"` the loader serves rows in order, global batch n being rows `[nB, (n+1)B)`:
        an objective that carries state per row (a segment model's memory) lays out B parallel streams
        stream-major for `batch_size` B — row `nB + r` is segment n of stream r — and keeps the pool a multiple
        of B, so that no batch wraps into the next epoch mid-stream.
        """

    @abc.abstractmethod
    def prepare(self, examples: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        """The model-ready batch from loader rows (which carry `example_index` and `epoch`)."""

    @abc.abstractmethod
    def dummy_batch(self, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
        """A batch of the right shapes and dtypes (for abstract init and compilation)."""

    def init_inputs(self, batch: Mapping[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """Positional and keyword model inputs for `model.init` from a (dummy) batch (the model contract)."""
        kwargs = {"mask_BT": batch["mask"]}
        if "segment_ids" in batch:
            kwargs["segment_ids_BT"] = batch["segment_ids"]
        return (batch["inputs"],), kwargs

    @classmethod
    def predicted_positions_for(cls, cfg, seq_len: int) -> int:
        """Positions per sequence that reach the output layer under `cfg` (every one, unless it gathers)."""
        del cfg
        return seq_len

    @classmethod
    def memory_positions_for(cls, cfg) -> int:
        """Memory positions the objective carries into every layer's attention (keys, values and relative
        distances beyond the sequence's own), when the objective rather than the model sets them; 0 by default
        (a segment-recurrent model's own `mem_len` is in its family's towers)."""
        del cfg
        return 0

    @classmethod
    def frozen_towers(cls, cfg, seq_len: int, frozen_configs: Mapping[str, tuple[str, Any]]) -> tuple:
        """The FLOPs towers (`llm_jax.flops.Tower`, `trainable=False`) of the frozen models the loss runs.

        Each `required_models` entry runs forward once per step on the batch's inputs, evaluating the heads of
        `frozen_heads` at the positions the objective predicts; none by default (no required models).

        Args:
          cfg: this objective's config.
          seq_len: T.
          frozen_configs: `{required model name: (family, Config)}`.

        Raises:
          ValueError: a required model without its config.
        """
        from llm_jax import models  # why lazy: models import the objectives' registry

        missing = sorted(set(cls.required_models) - set(frozen_configs))
        if missing:
            raise ValueError(f"The {cls.name} objective runs the frozen models {missing}: pass their (family, "
                             "Config) as frozen_configs={name: (family, cfg)} to count their FLOPs.")
        towers = []
        for name in cls.required_models:
            family, model_cfg = frozen_configs[name]
            for tower in models.family_module(family).towers(
                    model_cfg, seq_len, predicted_positions=cls.predicted_positions_for(cfg, seq_len),
                    heads=cls.frozen_heads.get(name, cls.heads)):
                towers.append(dataclasses.replace(tower, trainable=False))
        return tuple(towers)

    @staticmethod
    def derived_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
        """Ratios of logged metrics (host side, after averaging over steps and micro-batches), e.g. a precision
        from normalised counts, since a step's metrics must add up over micro-batches; none by default."""
        del metrics
        return {}

    def predicted_positions(self, seq_len: int) -> int:
        return self.predicted_positions_for(self.cfg, seq_len)

    # ------------------------------------------------------------------ device side
    def init_carry(self, batch_size: int, model_cfg: Any) -> Any:
        """State carried from one step to the next for `batch_size` rows of a model with config `model_cfg`
        (batch-major leaves `[B, ...]`, e.g. Transformer-XL memory as `[B, L, M, D]`); `{}` = none."""
        del batch_size, model_cfg
        return {}

    @abc.abstractmethod
    def loss_denominators(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Normalisers of the whole global batch (sums of weights), computed before a micro-batch split."""

    @abc.abstractmethod
    def make_loss(self, model, frozen_models: Mapping[str, Any] | None = None) -> LossFn:
        """`loss(params, batch, rng, *, carry=None, frozen=None, denominators=None, deterministic=False)
        -> (loss, (metrics, carry))` for `model`; `frozen_models` are the modules of `required_models`, whose
        params arrive as `frozen[name]`."""


def weighted_cross_entropy(logits_BPV: jax.Array, ids_BP: jax.Array, weights_BP: jax.Array,
                           denominator: jax.Array | None = None, class_weights_V: jax.Array | None = None,
                           accuracy_denominator: jax.Array | None = None):
    """Cross-entropy and accuracy over the positions with weight > 0, in float32.

    Args:
      logits_BPV: logits over V classes (any leading shape).
      ids_BP: target ids.
      weights_BP: per-position weights (0 = ignored).
      denominator: the normaliser; default `sum(weights)` of this batch. Pass the global batch's sum under
        gradient accumulation so that micro-batch values add up to the full batch's.
      class_weights_V: scales each position's loss by its target class's weight (PyTorch's
        `CrossEntropyLoss(weight=...)`); the default denominator then sums the scaled weights.
      accuracy_denominator: the accuracy's normaliser; default `denominator` without class weights, else
        `sum(weights)`.

    Returns:
      `(loss, accuracy)` scalars; the accuracy is normalised by the unscaled weights.
    """
    logits_BPV = logits_BPV.astype(jnp.float32)
    ids_BP = ids_BP.astype(jnp.int32)
    logp_BPV = jax.nn.log_softmax(logits_BPV, axis=-1)
    nll_BP = -jnp.take_along_axis(logp_BPV, ids_BP[..., None], axis=-1)[..., 0]
    weights_BP = weights_BP.astype(jnp.float32)
    loss_w = weights_BP if class_weights_V is None else weights_BP * class_weights_V[ids_BP]
    loss_denom = jnp.maximum(jnp.sum(loss_w) if denominator is None else denominator, 1e-5)
    if accuracy_denominator is not None:
        acc_denom = jnp.maximum(accuracy_denominator, 1e-5)
    elif class_weights_V is None:
        acc_denom = loss_denom
    else:
        acc_denom = jnp.maximum(jnp.sum(weights_BP), 1e-5)
    loss = jnp.sum(nll_BP * loss_w) / loss_denom
    accuracy = jnp.sum((jnp.argmax(logits_BPV, -1) == ids_BP) * weights_BP) / acc_denom
    return loss, accuracy


def token_loss_fn(objective: "Objective", model, *, targets: str, weights: str, denominator: str) -> LossFn:
    """The loss of an objective whose model output has `logits_BTV` predicting `batch[targets]` at every position
    with weight `batch[weights]` (a causal LM, an encoder-decoder's decoder): weighted cross-entropy in nats,
    normalised by `loss_denominators(batch)[denominator]`, and top-1 `accuracy`."""

    def loss_fn(params, batch, rng, *, carry=None, frozen=None, denominators=None, deterministic=False):
        del frozen
        denominators = objective.loss_denominators(batch) if denominators is None else denominators
        args, kwargs = objective.init_inputs(batch)
        out = model.apply({"params": params}, *args, **kwargs, deterministic=deterministic, rngs={"dropout": rng})
        loss, acc = weighted_cross_entropy(out.logits_BTV, batch[targets], batch[weights], denominators[denominator])
        return loss, ({"loss": loss, "accuracy": acc}, carry)

    return loss_fn

"""The device mesh, logical axis rules and activation constraints.

This is the only module that touches `jax.sharding`. Models name their axes logically
(`nn.with_logical_partitioning(init, ("embed", "heads", "kv"))` on params, `shard(x, BATCH, SEQ, EMBED)`
on activations); a *rule set* maps logical names onto the mesh axes `data`, `fsdp` and `tensor`.

Params and activations use different logical names on purpose: under FSDP the parameter axis `embed`
is split over `fsdp`, while the activation axis `act_embed` stays whole and the batch is split instead
(the ZeRO-3 / MaxText convention).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")

# Activation axis names (used with `shard`).
BATCH = "act_batch"
SEQ = "act_seq"
EMBED = "act_embed"
HEADS = "act_heads"
KV = "act_kv"
MLP = "act_mlp"
VOCAB = "act_vocab"

# Parameter axis names (used with `nn.with_logical_partitioning`).
P_EMBED = "embed"
P_HEADS = "heads"
P_KV = "kv"
P_MLP = "mlp"
P_VOCAB = "vocab"
P_LAYERS = "layers"  # the stacked layer axis of a scanned `Stack` (layer-wise LR decay reads depth from it)

_BATCH_AXES = ("data", "fsdp")

RULE_SETS: dict[str, tuple[tuple[str, Any], ...]] = {
    # Pure data parallelism: every parameter replicated, batch split over every mesh axis that exists.
    "dp": (
        (BATCH, _BATCH_AXES),
    ),
    # ZeRO-3 style: params (and so optimizer state) split along the model width over `fsdp`.
    "fsdp": (
        (BATCH, _BATCH_AXES),
        (P_EMBED, "fsdp"),
    ),
    # FSDP + Megatron tensor parallelism: heads / FFN hidden / vocab split over `tensor`.
    "fsdp_tp": (
        (BATCH, _BATCH_AXES),
        (P_EMBED, "fsdp"),
        (P_HEADS, "tensor"),
        (P_MLP, "tensor"),
        (P_VOCAB, "tensor"),
        (HEADS, "tensor"),
        (MLP, "tensor"),
        (VOCAB, "tensor"),
    ),
}


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh axis sizes and the rule-set name.

    Attributes:
      data: size of the `data` axis; -1 means "all devices not used by the other axes".
      fsdp: size of the `fsdp` axis.
      tensor: size of the `tensor` axis.
      rules: one of `RULE_SETS` (`dp`, `fsdp`, `fsdp_tp`).
    """

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    rules: str = "dp"


def rules_for(name: str) -> tuple[tuple[str, Any], ...]:
    """Returns the logical→mesh rules of a named rule set."""
    if name not in RULE_SETS:
        raise ValueError(f"mesh.rules={name!r} is not a rule set; choose one of {sorted(RULE_SETS)}.")
    return RULE_SETS[name]


def resolve_axis_sizes(cfg: MeshConfig, num_devices: int) -> tuple[int, int, int]:
    """Turns the config's axis sizes (with at most one -1) into sizes whose product is `num_devices`."""
    sizes = [cfg.data, cfg.fsdp, cfg.tensor]
    if sum(s == -1 for s in sizes) > 1:
        raise ValueError(f"At most one mesh axis may be -1 (got data={cfg.data}, fsdp={cfg.fsdp}, tensor={cfg.tensor}).")
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"Mesh axis sizes must be positive or -1 (got data={cfg.data}, fsdp={cfg.fsdp}, tensor={cfg.tensor}).")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if num_devices % known:
            raise ValueError(
                f"Mesh axes fsdp×tensor×data = {known} do not divide the {num_devices} available devices; "
                "set --config.mesh.data/fsdp/tensor so that their product divides the device count.")
        sizes[sizes.index(-1)] = num_devices // known
    if int(np.prod(sizes)) != num_devices:
        raise ValueError(
            f"Mesh data×fsdp×tensor = {sizes[0]}×{sizes[1]}×{sizes[2]} = {int(np.prod(sizes))} but "
            f"{num_devices} devices are available; make the product equal the device count "
            "(or set one axis to -1 to absorb the rest).")
    return tuple(sizes)


def make_mesh(cfg: MeshConfig, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds the `(data, fsdp, tensor)` mesh with Auto axis types (what Linen's logical partitioning needs)."""
    rules_for(cfg.rules)  # validate early
    devices = list(devices) if devices is not None else jax.devices()
    sizes = resolve_axis_sizes(cfg, len(devices))
    if devices == jax.devices():
        return jax.make_mesh(sizes, MESH_AXES, axis_types=(AxisType.Auto,) * 3)
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def batch_axis_size(mesh: Mesh) -> int:
    """Number of ways the batch is split (product of the data-like axes)."""
    return int(np.prod([mesh.shape[a] for a in _BATCH_AXES]))


def shard(x: jax.Array, *logical_axes: str | None) -> jax.Array:
    """Constrains an activation's sharding by logical names (no-op outside `jax.set_mesh`)."""
    return nn.with_logical_constraint(x, logical_axes)


def _fit_spec_to_shape(spec: PartitionSpec, shape: Sequence[int], mesh: Mesh) -> PartitionSpec:
    """Drops mesh axes from dimensions they do not divide (e.g. vocab 30522 over tensor=4).

    XLA could pad uneven shards, but padded parameter shards make optimizer state and checkpoints
    device-count dependent; replicating that one dimension is the simpler, exact choice.
    """
    out = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        if axes is None:
            out.append(None)
            continue
        names = (axes,) if isinstance(axes, str) else tuple(axes)
        kept = []
        size = 1
        for name in names:
            if dim % (size * mesh.shape[name]) == 0:
                kept.append(name)
                size *= mesh.shape[name]
        out.append(tuple(kept) if len(kept) > 1 else (kept[0] if kept else None))
    return PartitionSpec(*out)


def logical_to_shardings(abstract_tree: Any, mesh: Mesh, rules) -> Any:
    """Maps a tree of (boxed, abstract) values to `NamedSharding`s via its logical partition specs."""
    specs = nn.get_partition_spec(abstract_tree)
    mesh_specs = nn.logical_to_mesh(specs, rules)
    unboxed = nn.meta.unbox(abstract_tree)

    def to_sharding(spec, leaf):
        spec = spec if isinstance(spec, PartitionSpec) else PartitionSpec()
        return NamedSharding(mesh, _fit_spec_to_shape(spec, np.shape(leaf), mesh))

    return jax.tree.map(to_sharding, mesh_specs, unboxed,
                        is_leaf=lambda x: isinstance(x, PartitionSpec) or x is None)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Sharding of a host batch array: leading (batch) axis over the data-like mesh axes."""
    return NamedSharding(mesh, PartitionSpec(_BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch_from_local(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles each process's slice of the global batch into globally sharded arrays.

    Every process passes only its own rows (the loader gives each host its contiguous slice), so no host
    ever materialises the whole global batch.
    """
    out = {}
    for name, value in local.items():
        value = np.asarray(value)
        sharding = batch_sharding(mesh, value.ndim)
        if jax.process_count() == 1:
            out[name] = jax.device_put(value, sharding)
        else:
            out[name] = jax.make_array_from_process_local_data(sharding, value)
    return out


_MULTIHOST_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES",
                  "OMPI_COMM_WORLD_SIZE", "MEGASCALE_COORDINATOR_ADDRESS")


def maybe_initialize_distributed() -> bool:
    """Calls `jax.distributed.initialize()` when the usual multi-host environment variables are present.

    Returns True when it did. Explicit `JAX_COORDINATOR_ADDRESS` + `JAX_NUM_PROCESSES` + `JAX_PROCESS_ID`
    are passed through (for localhost multi-process runs); cluster launchers (SLURM, Open MPI, Cloud TPU)
    are auto-detected by JAX itself.
    """
    if not any(os.environ.get(k) for k in _MULTIHOST_ENV):
        return False
    if getattr(maybe_initialize_distributed, "_done", False):
        return True
    kwargs = {}
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs["coordinator_address"] = os.environ["JAX_COORDINATOR_ADDRESS"]
        if os.environ.get("JAX_NUM_PROCESSES"):
            kwargs["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
        if os.environ.get("JAX_PROCESS_ID"):
            kwargs["process_id"] = int(os.environ["JAX_PROCESS_ID"])
    log.info("Initialising jax.distributed with %s", kwargs or "cluster auto-detection")
    jax.distributed.initialize(**kwargs)
    maybe_initialize_distributed._done = True
    return True

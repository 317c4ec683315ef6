"""Pruning: magnitude (weight) pruning, FFN neuron removal, and masks that survive fine-tuning.

Three transformations of a model's params (the `params` dict of the family's pretraining model, as
`llm_jax.interop.native.load_pretrained` returns it), chosen by a spec string (`parse_prune_spec`):

* **magnitude pruning** (Han et al. 2015 §3, "Learning both weights and connections"): weights whose absolute
  value is under a threshold (`magnitude-threshold:T`), or the smallest ones up to a target sparsity
  (`magnitude:S`), are set to 0 — one threshold over all chosen weights (global, the default) or one per matrix
  (`,per-matrix`: every layer's matrix of a scanned `[L, …]` stack separately, sliced along its `layers` axis).
  The matrices keep their shapes; the zeros are what is gained (compressible files, sparse kernels elsewhere).
* **neuron pruning** (`neurons:F`, `neurons-threshold:T`): FFN hidden units ranked by the L2 norm of their weight
  vectors are *removed* — smaller matrices and a Config with a smaller FFN width (the family's `FFN_BLOCKS`,
  `llm_jax.models.family`), a model that loads, runs, saves and exports like any other.
* **masks through training**: `masks_for` + `keep_masked` keep a pruned model's zeros at zero while it is
  fine-tuned (a last step in the optax chain zeroes the pruned entries of every update), and
  `gradual_magnitude_pruning` prunes during training on Zhu & Gupta's (2017, "To prune, or not to prune", §3)
  cubic schedule, with its masks in the optimizer state so that they are checkpointed and resumed (both in
  `llm_jax.compression.masks`, re-exported here).

What is pruned by default (`DEFAULT_GROUPS`): the projection kernels inside the transformer stacks — attention
query/key/value/output and the FFN's input(s) and output. Never embeddings, norm scales, biases, relative-position
tables or heads unless a `groups=REGEX` option names them (the regex is searched in each param's '/'-joined path,
e.g. `bert/encoder/stack/layers/block/mlp/wi/kernel`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from llm_jax import models
from llm_jax.compression.masks import (DEFAULT_GROUPS, GradualPruningState, _chosen, _flat, _unflat,
                                       gradual_magnitude_pruning, keep_masked, layer_axes_of, masks_for,
                                       measured_sparsity, sparsity_at)

METHODS = ("magnitude", "magnitude-threshold", "neurons", "neurons-threshold")
ACCEPTED = ("magnitude:SPARSITY (0 ≤ SPARSITY < 1), magnitude-threshold:T (T ≥ 0), neurons:FRACTION "
            "(0 ≤ FRACTION < 1) or neurons-threshold:T, then options ,per-matrix ,global ,begin=STEP ,end=STEP "
            ",every=STEPS and ,groups=REGEX (last: the rest of the text is the regex)")


# ------------------------------------------------------------------------------------------------- the spec


@dataclasses.dataclass(frozen=True)
class PruneSpec:
    """What to prune, parsed from text by `parse_prune_spec`.

    Attributes:
      method: one of `METHODS`.
      amount: the target sparsity (`magnitude`, fraction of the chosen weights set to 0), the absolute threshold
        (`magnitude-threshold`: |w| < T → 0; `neurons-threshold`: units whose L2 norm is < T), or the fraction of
        FFN hidden units removed (`neurons`).
      per_matrix: magnitude pruning: one threshold / target per layer's matrix instead of one over all chosen
        weights.
      groups: a regex searched in each param's '/'-joined path (None: `DEFAULT_GROUPS`; for neuron pruning: the
        family's FFN blocks whose path it matches, None = all of them).
      begin / end / every: gradual pruning during fine-tuning only (`gradual_magnitude_pruning`): the first and
        last optimizer steps of the schedule and the steps between mask updates (None = the fine-tuning run's
        defaults).
      text: the text it was parsed from.
    """

    method: str
    amount: float
    per_matrix: bool = False
    groups: str | None = None
    begin: int | None = None
    end: int | None = None
    every: int | None = None
    text: str = ""

    @property
    def group_regex(self) -> str:
        """The regex of the weights magnitude pruning chooses (the spec's, or `DEFAULT_GROUPS`)."""
        return self.groups if self.groups is not None else DEFAULT_GROUPS

    @property
    def is_magnitude(self) -> bool:
        return self.method.startswith("magnitude")

    @property
    def has_schedule(self) -> bool:
        return (self.begin, self.end, self.every) != (None, None, None)


def _bad(text: str, why: str) -> ValueError:
    return ValueError(f"Prune spec {text!r}: {why}; accepted: {ACCEPTED}.")


def parse_prune_spec(text: str) -> PruneSpec:
    """Parses `METHOD:AMOUNT[,OPTION...]` (see `ACCEPTED`), e.g. `magnitude:0.5`, `magnitude:0.9,per-matrix`,
    `magnitude-threshold:0.01,groups=mlp/w[io]/kernel$`, `neurons:0.25`, `magnitude:0.8,begin=0,end=600,every=50`.

    Options: `per-matrix` / `global` (magnitude pruning: one threshold per layer's matrix, or one over all chosen
    weights — the default); `begin=STEP`, `end=STEP`, `every=STEPS` (the gradual schedule of fine-tuning,
    `gradual_magnitude_pruning`); `groups=REGEX` (the params to prune; it comes last and takes the rest of the
    text, commas included).

    Raises:
      ValueError: one line saying what is wrong and listing the accepted forms.
    """
    if not isinstance(text, str) or ":" not in text:
        raise _bad(text, "expected METHOD:AMOUNT")
    head, _, rest = text.strip().partition(":")
    method = head.strip()
    if method not in METHODS:
        raise _bad(text, f"unknown method {method!r}")
    groups = None
    if ",groups=" in rest:
        rest, _, groups = rest.partition(",groups=")
        try:
            re.compile(groups)
        except re.error as e:
            raise _bad(text, f"groups={groups!r} is not a regular expression ({e})") from None
        if not groups:
            raise _bad(text, "groups= is empty")
    amount_text, *options = [part.strip() for part in rest.split(",")]
    try:
        amount = float(amount_text)
    except ValueError:
        raise _bad(text, f"the amount {amount_text!r} is not a number") from None
    if not math.isfinite(amount) or amount < 0 or (method in ("magnitude", "neurons") and amount >= 1):
        raise _bad(text, f"the amount {amount_text} is out of range")
    fields: dict[str, Any] = {}
    for option in options:
        key, eq, value = option.partition("=")
        if option in ("per-matrix", "global"):
            fields["per_matrix"] = option == "per-matrix"
        elif eq and key in ("begin", "end", "every"):
            try:
                fields[key] = int(value)
            except ValueError:
                raise _bad(text, f"{key}={value!r} is not a whole number of steps") from None
        else:
            raise _bad(text, f"unknown option {option!r}")
    spec = PruneSpec(method, amount, groups=groups, text=text.strip(), **fields)
    if not spec.is_magnitude and (spec.per_matrix or "per_matrix" in fields):
        raise _bad(text, "per-matrix/global apply to magnitude pruning; neuron pruning always ranks each layer's "
                   "units separately")
    if spec.has_schedule and spec.method != "magnitude":
        raise _bad(text, "begin/end/every schedule gradual pruning to a target sparsity (magnitude:S) only")
    if (spec.begin or 0) < 0 or (spec.every is not None and spec.every < 1) or (
            spec.end is not None and spec.end <= (spec.begin or 0)):
        raise _bad(text, "the schedule needs 0 ≤ begin < end and every ≥ 1")
    return spec


# ------------------------------------------------------------------------------------------- layer axes


def layer_axes(family: str, config) -> dict[str, int | None]:
    """`layer_axes_of` the family's pretraining model (shapes only: nothing is allocated)."""
    from llm_jax import objectives  # why lazy: objectives sit above models; only the init inputs are needed

    model = models.build(family, config)
    objective = objectives.shape_only_objective(models.family_module(family).DEFAULT_OBJECTIVE, config.vocab_size)
    args, kwargs = objective.init_inputs(objective.dummy_batch(1, 8))
    boxed = jax.eval_shape(lambda k: model.init(k, *args, **kwargs), jax.random.key(0))["params"]
    return layer_axes_of(boxed)


def _matrices(x: np.ndarray, axis: int | None) -> np.ndarray:
    """`x` as `[M, N]`: one row per layer's matrix (axis = the layers axis) or one row (no layers axis)."""
    if axis is None:
        return x.reshape(1, -1)
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)


def _from_matrices(rows: np.ndarray, like: np.ndarray, axis: int | None) -> np.ndarray:
    if axis is None:
        return rows.reshape(like.shape)
    moved = np.moveaxis(like, axis, 0).shape
    return np.moveaxis(rows.reshape(moved), 0, axis)


def _smallest_k_mask(abs_values: np.ndarray, k: int) -> np.ndarray:
    """A bool mask of exactly the `k` smallest entries of a 1-D array (ties broken by position)."""
    prune = np.zeros(abs_values.shape, bool)
    if k <= 0:
        return prune
    if k >= abs_values.size:
        prune[:] = True
        return prune
    kth = np.partition(abs_values, k - 1)[k - 1]
    prune = abs_values < kth
    ties = np.flatnonzero(abs_values == kth)[:k - int(prune.sum())]
    prune[ties] = True
    return prune


def _stats(before: np.ndarray, after: np.ndarray, axis: int | None) -> dict[str, Any]:
    rows = _matrices(after, axis)
    entry = {"shape": list(after.shape), "size": int(after.size), "nonzero_before": int(np.count_nonzero(before)),
             "nonzero": int(np.count_nonzero(after)), "sparsity": float(1 - np.count_nonzero(after) / after.size)}
    if axis is not None:
        entry["layer_sparsity"] = [float(1 - np.count_nonzero(r) / r.size) for r in rows]
    return entry


# -------------------------------------------------------------------------------------- magnitude pruning


def magnitude_prune(params, spec: PruneSpec, axes: Mapping[str, int | None] | None = None) -> tuple[dict, dict]:
    """Magnitude pruning (Han et al. 2015 §3) of the params `spec.group_regex` chooses; shapes are unchanged.

    Args:
      params: a params tree (nested dicts of arrays).
      spec: `magnitude:S` (exactly ⌊S·N + ½⌋ of the N chosen weights — the smallest |w|, ties by position — set to
        0, N counted per layer's matrix with `per_matrix`) or `magnitude-threshold:T` (|w| < T → 0).
      axes: `layer_axes(...)`: where each param's `layers` axis is (per-matrix pruning slices along it); None =
        every param is one matrix.

    Returns:
      `(params, groups)`: the new params (numpy) and, per pruned param path, its shape, size, non-zeros before and
      after, sparsity and (stacked) each layer's sparsity.
    """
    flat = {k: np.asarray(v) for k, v in _flat(params).items()}
    chosen = _chosen(flat, spec.group_regex, spec.text)
    axes = axes or {}
    out = dict(flat)
    if spec.method == "magnitude-threshold":
        for p in chosen:
            out[p] = np.where(np.abs(flat[p]) < spec.amount, 0, flat[p]).astype(flat[p].dtype)
    elif spec.per_matrix:
        for p in chosen:
            rows = _matrices(np.abs(flat[p]), axes.get(p))
            prune = np.stack([_smallest_k_mask(r, int(round(spec.amount * r.size))) for r in rows])
            out[p] = np.where(_from_matrices(prune, flat[p], axes.get(p)), 0, flat[p]).astype(flat[p].dtype)
    else:
        sizes = [flat[p].size for p in chosen]
        everything = np.concatenate([np.abs(flat[p]).ravel() for p in chosen])
        prune = np.split(_smallest_k_mask(everything, int(round(spec.amount * everything.size))),
                         np.cumsum(sizes)[:-1])
        for p, m in zip(chosen, prune):
            out[p] = np.where(m.reshape(flat[p].shape), 0, flat[p]).astype(flat[p].dtype)
    return _unflat(out), {p: _stats(flat[p], out[p], axes.get(p)) for p in chosen}


# ----------------------------------------------------------------------------------------- neuron pruning


def _ffn_blocks(family: str, spec: PruneSpec | None = None) -> dict[str, tuple[str, ...]]:
    fam = models.family_module(family)
    blocks = getattr(fam, "FFN_BLOCKS", None)
    if blocks is None:
        raise ValueError(f"Family {family!r} declares no FFN_BLOCKS (the family-contract member that names its FFN "
                         f"width field and FFN modules): neuron pruning needs it; prune by magnitude instead.")
    if spec is not None and spec.groups is not None:
        pattern = re.compile(spec.groups)
        blocks = {f: tuple(p for p in paths if pattern.search(p)) for f, paths in blocks.items()}
        blocks = {f: paths for f, paths in blocks.items() if paths}
        if not blocks:
            raise ValueError(f"Prune spec {spec.text!r}: groups={spec.groups!r} matches none of {family}'s FFN blocks "
                             f"{[p for ps in fam.FFN_BLOCKS.values() for p in ps]}; fix the regex.")
    return blocks


def _ffn_module(params, path: str) -> dict | None:
    """The FFN module's params at `path`, or None when the params lack it (a fine-tuned classifier has no ELECTRA
    generator)."""
    node = params
    for key in path.split("/"):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _unit_norms(mlp: Mapping[str, Any]) -> np.ndarray:
    """`[..., F]`: each hidden unit's L2 norm over its incoming kernel column(s) and outgoing kernel row."""
    squares = np.square(np.asarray(mlp["wo"]["kernel"], np.float64)).sum(-1)  # [..., F, D] → [..., F]
    for name in sorted(k for k in mlp if k.startswith("wi")):
        squares = squares + np.square(np.asarray(mlp[name]["kernel"], np.float64)).sum(-2)  # [..., D, F] → [..., F]
    return np.sqrt(squares)


def ffn_units_to_keep(family: str, config, params, spec: PruneSpec) -> dict[str, tuple[str, np.ndarray]]:
    """Which FFN hidden units neuron pruning keeps: FFN block path → (its width field, `[..., K]` sorted indices).

    A unit's score is the L2 norm of its weight vectors: its incoming column of `wi` (both `wi_0` and `wi_1` when
    gated, T5 v1.1) together with its outgoing row of `wo`, biases left out (they are not weight vectors; a removed
    unit's biases go with it). `neurons:F` removes the round(F·width) lowest-scoring units; `neurons-threshold:T`
    the units scoring under T. Every layer of a scanned stack ranks its own units and keeps its own set, but all
    keep the same number K, because the stacked `[L, …]` layout needs equal widths: with a threshold, K is set by
    the layer with the fewest units under it (other layers keep some units under the threshold). All blocks of
    one width field (T5's encoder and decoder) keep the same K too. A shared stack (ALBERT) has one set.

    Blocks the params lack (a fine-tuned classifier has no ELECTRA generator) are skipped, and their width stays.

    Raises:
      ValueError: the family has no `FFN_BLOCKS`, the params hold none of its blocks, or every unit would go.
    """
    blocks = _ffn_blocks(family, spec)
    keep: dict[str, tuple[str, np.ndarray]] = {}
    for field, paths in blocks.items():
        width = getattr(config, field)
        norms = {p: _unit_norms(_ffn_module(params, p)) for p in paths if _ffn_module(params, p) is not None}
        if not norms:
            continue  # none of this width's blocks is in these params: the width stays
        if spec.method == "neurons":
            removed = int(round(spec.amount * width))
        else:
            removed = min(int(c) for n in norms.values() for c in np.atleast_1d((n < spec.amount).sum(-1)))
        if removed >= width:
            raise ValueError(f"Prune spec {spec.text!r} removes all {width} units of {field}; remove fewer.")
        k = width - removed
        for p, n in norms.items():
            # Stable ranking (highest norm first, ties by position), then the kept units in their original order.
            order = np.argsort(-n, axis=-1, kind="stable")[..., :k]
            keep[p] = (field, np.sort(order, axis=-1))
    if not keep:
        names = [p for ps in blocks.values() for p in ps]
        raise ValueError(f"These params hold none of {family}'s FFN blocks {names}; pass the params load_pretrained "
                         f"returns for a {family} model.")
    return keep


def _take_units(mlp: dict, idx: np.ndarray) -> dict:
    """The FFN module's params restricted to the hidden units `idx` (`[..., K]`)."""
    out = {}
    for name, sub in mlp.items():
        sub = dict(sub)
        if name.startswith("wi"):
            sub["kernel"] = np.take_along_axis(np.asarray(sub["kernel"]), idx[..., None, :], axis=-1)
            if "bias" in sub:
                sub["bias"] = np.take_along_axis(np.asarray(sub["bias"]), idx, axis=-1)
        elif name == "wo":
            sub["kernel"] = np.take_along_axis(np.asarray(sub["kernel"]), idx[..., :, None], axis=-2)
        out[name] = sub
    return out


def neuron_prune(family: str, config, params, spec: PruneSpec) -> tuple[Any, dict, dict]:
    """Removes FFN hidden units (see `ffn_units_to_keep` for the ranking): smaller `wi` / `wo` matrices and a
    Config whose FFN width field (the family's `FFN_BLOCKS`) is the kept count.

    Returns:
      `(config, params, blocks)`: the new Config and params (numpy), and per FFN block its width field, units
      before and kept.

    Raises:
      ValueError: as `ffn_units_to_keep`.
    """
    keep = ffn_units_to_keep(family, config, params, spec)
    flat_modules = {}
    widths = {}
    for path, (field, idx) in keep.items():
        flat_modules[path] = _take_units(_ffn_module(params, path), idx)
        widths[field] = idx.shape[-1]
    new = jax.tree.map(np.asarray, dict(params))
    for path, module in flat_modules.items():
        *parents, last = path.split("/")
        node = new
        for key in parents:
            node[key] = dict(node[key])
            node = node[key]
        node[last] = module
    new_config = dataclasses.replace(config, **widths).validate()
    blocks = {path: {"width_field": field, "units": int(getattr(config, field)), "kept": int(idx.shape[-1])}
              for path, (field, idx) in keep.items()}
    return new_config, new, blocks


# ------------------------------------------------------------------------------------------------ prune()


def _count(params) -> tuple[int, int]:
    leaves = jax.tree.leaves(params)
    return sum(int(np.size(x)) for x in leaves), sum(int(np.count_nonzero(np.asarray(x))) for x in leaves)


def prune(family: str, config, params, spec: PruneSpec) -> tuple[Any, dict, dict]:
    """Prunes a model as `spec` says (module docstring; Han et al. 2015 §3 for weights, L2-norm neuron ranking).

    Args:
      family: the registry name (`"bert"`).
      config: its Config; params: the params of `llm_jax.models.build(family, config)` (what `load_pretrained`
        returns).
      spec: from `parse_prune_spec` (no begin/end/every: those schedule pruning during fine-tuning).

    Returns:
      `(config, params, report)`: the Config (smaller after neuron pruning, else the same), the params (numpy), and
      a JSON-able report — `spec`, `method`, `amount`, `per_matrix`, `groups` (the regex used), per pruned param or
      FFN block what happened (`params`: shape, sparsity, per-layer sparsity; or `blocks`: units and kept), the
      pruned weights' `sparsity`, and the whole model's `parameters_before`/`parameters` and
      `nonzero_before`/`nonzero`. The report is what `save_model_dir(..., compression={"prune": report})` records.

    Raises:
      ValueError: a spec with a schedule, groups that match nothing, or neuron pruning of a family without
        `FFN_BLOCKS` (one line each).
    """
    if spec.has_schedule:
        raise ValueError(f"Prune spec {spec.text!r}: begin/end/every schedule gradual pruning during fine-tuning "
                         f"(train.prune); pruning a saved model takes no schedule — drop them.")
    params_before, nonzero_before = _count(params)
    report: dict[str, Any] = {"spec": spec.text, "method": spec.method, "amount": spec.amount}
    if spec.is_magnitude:
        axes = layer_axes(family, config) if spec.per_matrix else None
        new_params, groups = magnitude_prune(params, spec, axes)
        size = sum(g["size"] for g in groups.values())
        report.update(per_matrix=spec.per_matrix, groups=spec.group_regex, params=groups,
                      sparsity=float(1 - sum(g["nonzero"] for g in groups.values()) / size),
                      pruned_group_size=size)
        new_config = config
    else:
        new_config, new_params, blocks = neuron_prune(family, config, params, spec)
        report.update(groups=spec.groups, blocks=blocks,
                      width={b["width_field"]: [b["units"], b["kept"]] for b in blocks.values()})
    params_after, nonzero_after = _count(new_params)
    report.update(parameters_before=params_before, parameters=params_after, nonzero_before=nonzero_before,
                  nonzero=nonzero_after)
    return new_config, new_params, report


def compression_record(path: str | os.PathLike) -> dict:
    """The `compression` record of a model directory's config.json (what `llm-jax compress` did to it: `prune`,
    `quantize` and, for a model compressed more than once, `history`, the earlier steps' records, oldest first);
    `{}` for a directory without one or without a readable config.json."""
    config_file = pathlib.Path(path).expanduser() / "config.json"
    if not config_file.is_file():
        return {}
    try:
        record = json.loads(config_file.read_text(encoding="utf-8")).get("compression", {})
    except (ValueError, AttributeError, OSError):
        return {}
    return record if isinstance(record, dict) else {}


def prune_record(path: str | os.PathLike) -> dict | None:
    """The newest **magnitude**-pruning report in a model directory's compression record (`compression.prune`, or
    an earlier step's in `compression.history` when a later step pruned neurons), or None: what fine-tuning reads
    to keep the pruned weights at zero."""
    record = compression_record(path)
    steps = [record] + list(reversed([h for h in record.get("history", []) if isinstance(h, dict)]))
    for step in steps:
        report = step.get("prune")
        if isinstance(report, dict) and str(report.get("method", "")).startswith("magnitude"):
            return report
    return None


__all__ = ["ACCEPTED", "DEFAULT_GROUPS", "METHODS", "GradualPruningState", "PruneSpec", "compression_record",
           "ffn_units_to_keep", "gradual_magnitude_pruning", "keep_masked", "layer_axes", "layer_axes_of",
           "magnitude_prune", "masks_for", "measured_sparsity", "neuron_prune", "parse_prune_spec", "prune",
           "prune_record", "sparsity_at"]

"""Early stopping that keeps the best params: `BestKeeper` (fine-tuning's dev-set model selection, BERT §4)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from llm_jax.eval import metrics as metrics_lib


def write_json(path: pathlib.Path, obj: Any) -> None:
    """Writes `obj` atomically (temp file + rename) from process 0."""
    if jax.process_index() == 0:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        tmp.replace(path)


def _better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric in metrics_lib.LOWER_IS_BETTER else value > best


class BestKeeper:
    """Keeps the params of the best evaluation so far, on disk (`DIR/best/`) and as a device copy.

    `update(step, metrics, state)` returns whether training should stop (patience exhausted). The record in
    `best/meta.json` (step, value, evaluations since) lets a resumed run continue the same early stopping.
    """

    def __init__(self, directory: pathlib.Path, metric: str, patience: int):
        self.directory, self.metric, self.patience = directory, metric, patience
        self.meta: dict[str, Any] = {"step": None, "value": None, "evals_since_best": 0, "history": []}
        self.params = None
        if (directory / "meta.json").exists():
            self.meta = json.loads((directory / "meta.json").read_text())

    @property
    def exhausted(self) -> bool:
        return bool(self.patience) and self.meta["evals_since_best"] >= self.patience

    def update(self, step: int, metrics: dict[str, float], state) -> bool:
        value = metrics[f"eval_{self.metric}"]
        self.meta["history"].append({"step": int(step), self.metric: value})
        if _better(value, self.meta["value"], self.metric):
            # A copy on the devices, in the params' own sharding: the next step donates the state's buffers.
            self.params = jax.tree.map(jnp.copy, state.params)
            self.meta.update(step=int(step), value=value, evals_since_best=0)
            with ocp.StandardCheckpointer() as ckptr:  # every process takes part (multi-host saves)
                ckptr.save(self.directory.absolute() / "params", self.params, force=True)
        else:
            self.meta["evals_since_best"] += 1
        if jax.process_index() == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_json(self.directory / "meta.json", self.meta)
        return self.exhausted

    def load(self, abstract_params):
        """The best params (from memory, else from disk onto `abstract_params`), or None if never evaluated."""
        if self.params is not None:
            return self.params
        if self.meta["step"] is None or not (self.directory / "params").exists():
            return None
        with ocp.StandardCheckpointer() as ckptr:
            return ckptr.restore(self.directory.absolute() / "params", abstract_params)


__all__ = ["BestKeeper", "write_json"]

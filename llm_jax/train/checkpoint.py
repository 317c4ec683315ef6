"""Orbax checkpoints of the TrainState + a JSON `meta` (loader position, resolved config).

Orbax writes each step atomically (to a temporary directory renamed on success) and asynchronously, and
keeps the newest `max_to_keep` steps — the previous good one is deleted only after a new one is complete.
It does not fall back when the newest step is damaged (restore raises): `restore_latest` does that here,
trying older steps newest-first and warning about each one it skips.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class Checkpointer:
    """Saves/restores `(state, meta)` under `<workdir>/checkpoints/<step>/`.

    Args:
      directory: the checkpoints folder.
      max_to_keep: newest steps kept on disk (≥ 2, so one good step survives a damaged newest one).
      async_save: write in a background thread (the loop waits before the next save and at exit).
    """

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 3, async_save: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=max(2, max_to_keep), create=True,
                                               enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict[str, Any], *, force: bool = False) -> bool:
        """Starts saving `state` and `meta` as `step` (returns False if that step already exists)."""
        if step in self._manager.all_steps():
            return False
        return self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)

    def wait(self) -> None:
        """Blocks until an asynchronous save has been committed."""
        self._manager.wait_until_finished()

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """Restores one step onto `abstract_state` (ShapeDtypeStructs with shardings)."""
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return restored["state"], restored["meta"]

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """Restores the newest step that restores cleanly; None if there is no checkpoint at all.

        A damaged newest step (interrupted write, corrupted file) is skipped with a warning. If every
        step fails, the error of the newest one is raised with the list of what was tried.
        """
        errors = []
        for step in reversed(self.steps()):
            try:
                state, meta = self.restore(step, abstract_state)
            except Exception as e:  # orbax raises many types (ValueError, FileNotFoundError, tensorstore errors)
                differing = self.shape_mismatches(step, abstract_state)
                if differing:  # not damage: the checkpoint belongs to another architecture
                    raise ValueError(
                        f"Checkpoint step {step} in {self.directory} does not fit the current config: "
                        + "; ".join(differing[:10]) + (f" (and {len(differing) - 10} more)" if len(differing) > 10 else "")
                        + ". Restore with the config that wrote it, or start a new workdir.") from e
                log.warning("Checkpoint step %d in %s could not be restored (%s: %s); trying an older one.",
                            step, self.directory, type(e).__name__, str(e).splitlines()[0][:300])
                errors.append((step, e))
                continue
            return step, state, meta
        if errors:
            tried = ", ".join(str(s) for s, _ in errors)
            raise RuntimeError(f"No checkpoint in {self.directory} could be restored (tried steps {tried}). If the "
                               "model or mesh config changed since they were written, restore with the original "
                               "config or start a new workdir.") from errors[0][1]
        return None

    def shape_mismatches(self, step: int, abstract_state: Any) -> list[str]:
        """`'path: checkpoint (a, b) vs config (c, d)'` for every array whose saved shape differs (or is missing)."""
        try:
            with ocp.StandardCheckpointer() as reader:
                saved = reader.metadata(self.directory / str(step) / "state").item_metadata
        except Exception:  # unreadable metadata is damage, which the caller handles
            return []
        saved = getattr(saved, "tree", saved)
        saved_shapes = {jax.tree_util.keystr(p): tuple(m.shape)
                        for p, m in jax.tree_util.tree_leaves_with_path(saved) if hasattr(m, "shape")}
        if not saved_shapes:
            return []  # no readable tree metadata: damage, not a different architecture
        out = []
        for path, leaf in jax.tree_util.tree_leaves_with_path(abstract_state):
            key = jax.tree_util.keystr(path)
            if key.startswith(".opt_state"):
                continue  # optimizer moments mirror the params: naming the params is enough
            got = saved_shapes.get(key.replace(".params", "['params']", 1).replace(".step", "['step']", 1))
            if got is None:
                got = saved_shapes.get(key)
            if got is None:
                out.append(f"{key}: missing from the checkpoint")
            elif got != tuple(leaf.shape):
                out.append(f"{key}: checkpoint {got} vs config {tuple(leaf.shape)}")
        return out

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def abstract_like(state: Any) -> Any:
    """ShapeDtypeStructs with the shardings of `state`, the target orbax restores onto."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)

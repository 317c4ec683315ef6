"""Metric sinks: `<workdir>/metrics.jsonl` (one JSON object per logged step), TensorBoard events, console."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import jax


class MetricWriter:
    """Writes scalars to JSON lines and TensorBoard event files (process 0 only).

    Args:
      workdir: run directory; `metrics.jsonl` and `tensorboard/` go there.
    """

    def __init__(self, workdir: str | pathlib.Path):
        self.enabled = jax.process_index() == 0
        self.path = pathlib.Path(workdir) / "metrics.jsonl"
        self._tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter  # why lazy: only process 0 writes events

            self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

    def write(self, step: int, scalars: dict[str, Any]) -> dict[str, float]:
        """Records `scalars` for `step`; returns them as plain floats."""
        row = {"step": int(step)}
        for k, v in scalars.items():
            v = float(v)
            row[k] = v if math.isfinite(v) else str(v)  # JSON has no NaN/inf literals
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            for k, v in row.items():
                if k != "step" and isinstance(v, float):
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()
        return row

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str | pathlib.Path) -> list[dict[str, Any]]:
    """The rows of `<workdir>/metrics.jsonl` (empty if none)."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def format_row(row: dict[str, Any], keys=("loss", "mlm_loss", "mlm_accuracy", "nsp_accuracy", "learning_rate",
                                           "tokens_per_s")) -> str:
    parts = []
    for k in keys:
        if k in row and isinstance(row[k], float):
            parts.append(f"{k}={row[k]:.4g}")
    return " ".join(parts)

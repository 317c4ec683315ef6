"""Writing up experiments: the machine and versions they ran on, markdown tables, and result files.

A benchmark (DESIGN.md §7) prints a table and writes `<name>.md` and `<name>.json` with the machine, the
library versions and the commit, so that every number can be traced to what produced it.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
from collections.abc import Sequence
from typing import Any


def machine_info(repo: str | os.PathLike | None = None) -> dict[str, Any]:
    """CPU model, core count, OS, library versions (torch and transformers too where installed: the reference
    of the parity tests and benchmarks) and the git commit (`+dirty` with uncommitted changes)."""
    import jax

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # no /proc (not Linux): keep platform's name
        cpu = next((line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    installed = {(d.metadata["Name"] or "").lower(): d.version for d in importlib.metadata.distributions()}
    versions = {"python": platform.python_version(),
                **{p: installed[p] for p in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "transformers")
                   if p in installed}}
    commit = ""
    if repo is not None:
        def git(*args):
            try:
                done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
                return done.stdout.strip()
            except (OSError, subprocess.TimeoutExpired):
                return ""
        commit = git("rev-parse", "--short", "HEAD")
        if commit and git("status", "--porcelain", "--untracked-files=no"):
            commit += "+dirty"
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.system(), "devices": str(jax.devices()),
            "versions": versions, "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], floats: str = "{:.3f}") -> str:
    """A GitHub markdown table; floats formatted with `floats`, None as an em dash."""
    def cell(x):
        if x is None:
            return "—"
        if isinstance(x, float):
            return floats.format(x)
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(info: dict[str, Any]) -> str:
    v = info["versions"]
    return (f"{info['cpu']}, {info['cores']} cores, {info['system']}; jax {v['jax']}, flax {v['flax']}; "
            f"commit {info['commit'] or 'unknown'}; {info['date']}")


def write_results(directory: str | os.PathLike, name: str, payload: dict[str, Any], markdown: str) -> tuple[
        pathlib.Path, pathlib.Path]:
    """Writes `<directory>/<name>.json` (payload) and `<name>.md`; returns both paths."""
    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{name}.json", out / f"{name}.md"
    js.write_text(json.dumps(payload, indent=2) + "\n")
    md.write_text(markdown.rstrip() + "\n")
    return js, md


__all__ = ["machine_info", "machine_line", "markdown_table", "write_results"]

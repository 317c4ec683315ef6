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


# The vector and matrix extensions a CPU's flags may list that change which kernels the libraries run (PyTorch's
# ATen dispatches AVX-512 code, oneDNN/MKL AMX tiles): a VM's "model name" is often generic ("Intel(R) Xeon(R)
# Processor"), so `cpu_isa` tells two such CPUs apart.
VECTOR_ISA = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "asimd", "sve")


def machine_info(repo: str | os.PathLike | None = None) -> dict[str, Any]:
    """CPU model, core count, the CPU's vector extensions among `VECTOR_ISA` (`cpu_isa`), OS, library versions
    (torch and transformers too where installed: the reference of the parity tests and benchmarks) and the git
    commit (`+dirty` with uncommitted changes)."""
    import jax

    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    with contextlib.suppress(OSError):  # no /proc (not Linux): keep platform's name
        lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), cpu)
        flags = set(next((line.split(":", 1)[1].split() for line in lines
                          if line.startswith(("flags", "Features"))), []))
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
    return {"cpu": cpu, "cores": os.cpu_count(), "cpu_isa": [f for f in VECTOR_ISA if f in flags],
            "system": platform.system(), "devices": str(jax.devices()),
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

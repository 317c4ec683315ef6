"""`benchmarks/profile_step.py`: our step's XLA ops and the PyTorch twin's aten ops, by kind and phase, on a tiny
GPT-2 (one traced step each). Nothing here asserts a time."""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import profile_step  # noqa: E402

SPEC, OVERRIDES = "configs/gpt.py:version=2,size=tiny", ["model.scan_unroll=false"]


def test_both_profiles_by_kind_and_phase_side_by_side(require, tmp_path):
    """PyTorch's profiler counts the matmul FLOPs our accountant counts for the same step (the reference computes
    the same products); every phase of each side has its ops; the comparison table sets them side by side."""
    require("torch")
    require("transformers")
    ref = profile_step.profile_reference(SPEC, OVERRIDES, 2, 16, 1)
    assert ref["profiler_matmul_gflop_per_step"] == pytest.approx(ref["matmul_gflop_per_step"], rel=0.01)
    assert set(ref["op_ms"]) == set(profile_step.KINDS)
    assert ref["op_ms"]["matmul"]["forward"] > 0 and ref["op_ms"]["matmul"]["backward"] > 0
    assert ref["op_ms"]["elementwise/other"]["update"] > 0  # the optimizer, inside the step's `update` range
    assert ref["op_ms"]["dropout rng"]["forward"] > 0  # dropout on, as in ours
    assert any(name.startswith("aten::") for name in ref["top_ops_ms"])
    ours = profile_step.profile(SPEC, OVERRIDES, 2, 16, 1)
    assert ours["framework"] == "jax" and ours["matmul_gflop_per_step"] == ref["matmul_gflop_per_step"]
    assert ours["op_ms"]["matmul"]["backward"] > 0 and ours["op_ms"]["dropout rng"]["forward"] > 0
    text = profile_step.markdown([ours, ref])
    assert "### Ours vs PyTorch" in text and "GFLOP/s" in text
    table = text.split("### Ours vs PyTorch")[1]
    assert all(f"| {kind} |" in table for kind in profile_step.KINDS)
    # Rows are kept per machine: the same profiles from another CPU are added beside, each compared with its own.
    here = {"cpu": "This CPU", "cores": 2}
    profile_step.write_results([dict(ours, machine=here), dict(ref, machine=here)], tmp_path)
    there = dict(here, cpu="Another CPU")
    profile_step.write_results([dict(ours, machine=there), dict(ref, machine=there)], tmp_path)
    profile_step.write_results([dict(ours, machine=there, step_s=9.0)], tmp_path)  # a rerun replaces its own row
    rows = (tmp_path / "profile.json").read_text()
    assert rows.count('"framework": "jax"') == 2 and rows.count('"step_s": 9.0') == 1
    text = (tmp_path / "profile.md").read_text()
    assert text.count("### Ours vs PyTorch") == 2 and "— PyTorch — Another CPU, 2 cores" in text
    this, other = (text.split(f"### Ours vs PyTorch, `{SPEC}` {' '.join(OVERRIDES)} — batch 2 × seq 16 — {cpu}, 2 cores")[1]
                   .split("###")[0] for cpu in ("This CPU", "Another CPU"))
    assert "ours 9.000 s" in other and "ours 9.000 s" not in this  # each PyTorch row beside ours of its machine

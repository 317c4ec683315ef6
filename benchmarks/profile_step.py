"""Where the time of our train step goes: XLA:CPU op times by kind and phase, from a `jax.profiler` trace.

    python benchmarks/profile_step.py --config configs/bert.py:size=base --batch 8 --seq 128

Traces a few steps of the same jitted train step `benchmarks/throughput.py` times, maps every executed XLA
op (thunk) back to its HLO instruction and groups the op times by kind — matmul (XLA dots and YNNPACK dot
fusions, with their achieved FLOP/s), transpose/copy, dropout RNG, scatter (embedding and gather
gradients), reduction, other elementwise fusions — and by phase: forward, backward (`transpose(jvp(…))`
in the op's name) and update (everything outside the gradient: clipping, AdamW, the finite-check).
Op times are wall times of each op on its thread, so they add up to more than the step when ops overlap,
and they grow when other processes take the cores. An op that runs on both pool threads is recorded on each,
so the times are thread-seconds: they add up to about the step's CPU time, not to its wall time.
Writes `benchmarks/results/profile.{json,md}` (rows merged by config, overrides, batch, seq, machine, framework).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import pathlib
import re
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import throughput  # noqa: E402  (the same config loading, batch and train step)

NAME = "profile"
KINDS = ("matmul", "transpose/copy", "dropout rng", "scatter", "reduction", "elementwise/other")
PHASES = ("forward", "backward", "update")
_INSTR_RE = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(\S+)\s+([\w\-]+)\(")
_CALLS_RE = re.compile(r"calls=%([\w.\-]+)")
_COMP_RE = re.compile(r"^\s*(?:ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$")


def _hlo_index(text: str):
    """Instruction name → (opcode, op_name metadata, dot FLOPs inside it); computations → their instructions."""
    shapes: dict[str, list[int]] = {}
    comps: dict[str, list[str]] = collections.defaultdict(list)
    current = None
    for line in text.splitlines():
        m = _COMP_RE.match(line)
        if m and "=" not in line.split("{")[0]:
            current = m.group(1)
            continue
        m = _INSTR_RE.match(line)
        if m and current:
            comps[current].append(line)
            dims = re.match(r"\w+\[([\d,]*)\]", m.group(2))
            if dims:
                shapes[m.group(1)] = [int(x) for x in dims.group(1).split(",") if x]

    def dot_flops(line: str) -> int:
        m = re.search(r"\s+dot\((%[\w.\-]+),", line)
        out = re.match(r"\s*(?:ROOT\s+)?%[\w.\-]+\s*=\s*\w+\[([\d,]*)\]", line)
        contract = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", line)
        if not (m and out):
            return 0
        lhs = shapes.get(m.group(1)[1:], [])
        k = 1
        for i in (int(x) for x in (contract.group(1) if contract else "").split(",") if x):
            k *= lhs[i] if i < len(lhs) else 1
        n = 1
        for x in (int(x) for x in out.group(1).split(",") if x):
            n *= x
        return 2 * n * k

    def comp_flops(name: str, seen=()) -> int:
        total = 0
        for line in comps.get(name, []):
            total += dot_flops(line)
            for callee in _CALLS_RE.findall(line):
                if callee not in seen:
                    total += comp_flops(callee, seen + (name,))
        return total

    index = {}
    for lines in comps.values():
        for line in lines:
            m = _INSTR_RE.match(line)
            meta = re.search(r'op_name="([^"]*)"', line)
            flops = dot_flops(line) + sum(comp_flops(c) for c in _CALLS_RE.findall(line) if m.group(3) == "fusion")
            index[m.group(1)] = (m.group(3), meta.group(1) if meta else "", flops)
    return index


def _untraced_step_s(step_fn, steps: int = 2) -> float:
    """The median wall time of `steps` more steps without a profiler: what tracing adds is the traced time minus
    this (the profiler's per-op cost, large for PyTorch's many small ops)."""
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        step_fn(100 + i)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _kind(name: str, opcode: str, op_name: str, flops: int) -> str:
    if flops:
        return "matmul"
    if any(w in op_name for w in ("_bernoulli", "_uniform", "threefry", "random_bits")):
        return "dropout rng"
    if "scatter" in name or opcode == "scatter":
        return "scatter"
    if "transpose" in name or "copy" in name or opcode in ("copy", "transpose"):
        return "transpose/copy"
    if "reduce" in name or opcode == "reduce" or op_name.rsplit("/", 1)[-1].startswith("reduce"):
        return "reduction"
    return "elementwise/other"


def _phase(op_name: str) -> str:
    if "transpose(jvp(" in op_name:
        return "backward"
    if "jvp(" in op_name:
        return "forward"
    return "update"


def profile(spec: str, overrides: list[str], batch: int, seq: int, steps: int) -> dict:
    import jax

    from llm_jax import flops as flops_lib

    run = throughput.load_run_config(spec, overrides)
    batch_np = throughput.synthetic_batch(run, batch, seq)
    step_fn, meta = throughput.setup_ours(run, batch_np, keep_hlo=True)
    index = _hlo_index(meta.pop("hlo_text"))
    step_fn()
    step_fn()
    untraced_s = _untraced_step_s(step_fn)
    with tempfile.TemporaryDirectory() as trace_dir:
        c0, t0 = os.times(), time.perf_counter()
        with jax.profiler.trace(trace_dir):
            for _ in range(steps):
                step_fn()
        wall_s, c1 = (time.perf_counter() - t0) / steps, os.times()
        cpu_s = (c1.user + c1.system - c0.user - c0.system) / steps
        planes = list(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
        data = jax.profiler.ProfileData.from_file(str(planes[0]))
        ms = collections.defaultdict(float)
        by_name = collections.defaultdict(float)
        unmatched = 0.0
        for plane in data.planes:
            for line in plane.lines:
                if line.name == "python" or "python" in line.name.lower():
                    continue
                for event in line.events:
                    if event.name not in index:
                        unmatched += event.duration_ns
                        continue
                    opcode, op_name, f = index[event.name]
                    ms[(_kind(event.name, opcode, op_name, f), _phase(op_name))] += event.duration_ns / 1e6 / steps
                    by_name[re.sub(r"\.\d+$", "", event.name)] += event.duration_ns / 1e6 / steps
    table = {kind: {phase: round(ms[(kind, phase)], 1) for phase in PHASES} for kind in KINDS}
    matmul_ms = sum(ms[("matmul", p)] for p in PHASES)
    # The analytical count, equal to XLA's dots (tests/test_flops.py): trace events repeat per thread and per
    # loop iteration, so they cannot be summed into FLOPs.
    towers = flops_lib.towers_for(run.family, run.model, run.objective, seq)
    matmul_flops = flops_lib.train_flops(towers, batch).matmul
    return {
        "framework": "jax",
        "config": spec, "overrides": list(overrides), "batch": batch, "seq": seq, "steps_traced": steps,
        "step_s": wall_s, "untraced_step_s": untraced_s, "cpu_s": cpu_s, "op_ms": table,
        "op_ms_total": round(sum(ms.values()), 1), "matmul_gflop_per_step": matmul_flops / 1e9,
        "matmul_gflop_per_thread_s": matmul_flops / (matmul_ms / 1e3) / 1e9 if matmul_ms else None,
        "top_ops_ms": {k: round(v, 1) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])[:15]},
        "unmatched_ms": round(unmatched / 1e6 / steps, 1),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# PyTorch's ops (aten names) in the same kinds. What does not map 1:1: a fused LayerNorm and softmax count as
# reductions (XLA splits each into a reduction fusion and elementwise ones), `native_dropout` as elementwise (its
# random numbers are its `bernoulli_` child).
_TORCH_KINDS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product"),
    "dropout rng": ("aten::bernoulli", "aten::uniform_", "aten::normal_", "aten::random_", "aten::exponential_"),
    "scatter": ("aten::embedding_dense_backward", "aten::embedding_backward", "aten::index_add", "aten::scatter",
                "aten::index_put", "aten::_index_put", "aten::index_select_backward", "aten::gather_backward"),
    "transpose/copy": ("aten::copy_", "aten::clone", "aten::contiguous", "aten::_to_copy", "aten::cat", "aten::stack",
                       "aten::t", "aten::transpose", "aten::permute"),
    "reduction": ("aten::sum", "aten::mean", "aten::norm", "aten::linalg_vector_norm", "aten::_foreach_norm",
                  "aten::amax", "aten::max", "aten::native_layer_norm", "aten::_softmax", "aten::_log_softmax",
                  "aten::_softmax_backward_data", "aten::_log_softmax_backward_data", "aten::nll_loss"),
}


def _torch_kind(name: str) -> str:
    for kind, prefixes in _TORCH_KINDS.items():
        if name.startswith(prefixes):
            return kind
    return "elementwise/other"


def _torch_phase(event) -> str | None:
    while event is not None:
        if event.name in PHASES:
            return event.name
        event = event.cpu_parent
    return None


def profile_reference(spec: str, overrides: list[str], batch: int, seq: int, steps: int) -> dict:
    """The PyTorch twin of our step (`throughput.setup_reference`) under `torch.profiler`: each aten op's self time
    (wall time on the calling thread; intra-op threads run inside it, so the times add up to the step's wall time)
    by kind and phase, the matmul FLOPs the profiler counts, and the top ops by self time."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as throughput.py's reference worker (read at torch import)
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from llm_jax import flops as flops_lib

    run = throughput.load_run_config(spec, overrides)
    batch_np = throughput.synthetic_batch(run, batch, seq)
    step_fn, meta = throughput.setup_reference(run, batch_np)
    step_fn(0)
    step_fn(1)
    untraced_s = _untraced_step_s(step_fn)
    c0, t0 = os.times(), time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        for i in range(steps):
            step_fn(2 + i)
    wall_s, c1 = (time.perf_counter() - t0) / steps, os.times()
    cpu_s = (c1.user + c1.system - c0.user - c0.system) / steps
    ms = collections.defaultdict(float)
    by_name = collections.defaultdict(float)
    profiler_flops = 0
    for event in prof.events():
        if event.name in PHASES:
            continue
        self_ms = event.self_cpu_time_total / 1e3 / steps
        kind = _torch_kind(event.name)
        phase = _torch_phase(event) or "update"
        ms[(kind, phase)] += self_ms
        by_name[event.name] += self_ms
        profiler_flops += event.flops or 0
    table = {kind: {phase: round(ms[(kind, phase)], 1) for phase in PHASES} for kind in KINDS}
    matmul_ms = sum(ms[("matmul", p)] for p in PHASES)
    # Our accountant on the reference's computation: the same products as ours (`throughput.REFERENCES` computes
    # the MLM heads at the same P gathered positions), which the profiler's own count checks.
    towers = flops_lib.towers_for(run.family, run.model, run.objective, seq,
                                  frozen_configs=throughput.frozen_configs_for(run, spec))
    matmul_flops = flops_lib.train_flops(towers, batch).matmul
    return {
        "framework": "torch", "reference": meta["reference"], "torch_threads": meta["torch_threads"],
        "config": spec, "overrides": list(overrides), "batch": batch, "seq": seq, "steps_traced": steps,
        "step_s": wall_s, "untraced_step_s": untraced_s, "cpu_s": cpu_s, "op_ms": table,
        "op_ms_total": round(sum(ms.values()), 1), "matmul_gflop_per_step": matmul_flops / 1e9,
        "profiler_matmul_gflop_per_step": profiler_flops / steps / 1e9,
        "matmul_gflop_per_s": matmul_flops / (matmul_ms / 1e3) / 1e9 if matmul_ms else None,
        "top_ops_ms": {k: round(v, 1) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])[:15]},
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _wall_ms(row: dict, kind: str) -> float:
    """A kind's milliseconds per step on the step's wall clock. Ours are thread-times (an op on both pool threads
    counts twice), scaled by wall / total op thread-time; the reference's self times are already wall times."""
    total = sum(row["op_ms"][kind].values())
    if row.get("framework", "jax") == "torch":
        return total
    return total * row["step_s"] * 1e3 / row["op_ms_total"]


def _key(row: dict) -> tuple:
    """A row: config, batch shape, the machine it ran on (rows of another CPU are kept beside) and the framework."""
    return (*throughput._run_key(row), row.get("framework", "jax"))


def _fmt_s(value) -> str:
    return "—" if value is None else f"{value:.3f} s"


def comparison(ours: dict, ref: dict) -> list[str]:
    """Markdown lines: ours vs the reference, kind by kind, on the wall clock, with the matmul FLOPs and rates."""
    lines = [f"### Ours vs PyTorch, `{ours['config']}` {' '.join(ours['overrides'])} — batch {ours['batch']} × seq "
             f"{ours['seq']} — {throughput.machine_name(ours)}", "",
             f"Step wall time traced: ours {ours['step_s']:.3f} s, PyTorch {ref['step_s']:.3f} s; untraced (the same "
             f"processes, just before): ours {_fmt_s(ours.get('untraced_step_s'))}, PyTorch "
             f"{_fmt_s(ref.get('untraced_step_s'))} — one process each, not interleaved (`throughput.md` has the "
             "interleaved ratio); the profiler's own cost is in the traced times. Matmul FLOPs by our accountant: ours "
             f"{ours['matmul_gflop_per_step']:.1f} GFLOP, PyTorch's computation {ref['matmul_gflop_per_step']:.1f} "
             f"GFLOP (its profiler counts {ref['profiler_matmul_gflop_per_step']:.1f}).", "",
             "| kind | ours ms | PyTorch ms | PyTorch − ours ms | ours share | PyTorch share |", "|---|---|---|---|---|---|"]
    for kind in KINDS:
        a, b = _wall_ms(ours, kind), _wall_ms(ref, kind)
        lines.append(f"| {kind} | {a:.0f} | {b:.0f} | {b - a:+.0f} | {a / (ours['step_s'] * 1e3):.0%} | "
                     f"{b / (ref['step_s'] * 1e3):.0%} |")
    a, b = _wall_ms(ours, "matmul"), _wall_ms(ref, "matmul")
    lines += ["", f"Matmul rate on the wall clock: ours {ours['matmul_gflop_per_step'] / (a / 1e3):.1f} GFLOP/s (both "
              f"cores), PyTorch {ref['matmul_gflop_per_step'] / (b / 1e3):.1f} GFLOP/s.", ""]
    return lines


def markdown(rows: list[dict]) -> str:
    lines = ["# Where the train step's time goes: XLA:CPU ops (ours) and aten ops (PyTorch), ms per step", "",
             "From `benchmarks/profile_step.py`. Ours: a `jax.profiler` trace of the jitted train step, each op mapped",
             "to its HLO instruction; an op running on both pool threads counts on each, so the times add up to about",
             "the step's CPU time (thread-ms). PyTorch (`--reference`): `torch.profiler` self times of the aten ops of",
             "`throughput.py`'s reference step, wall times on the calling thread (intra-op threads run inside an op).",
             "The comparison tables put ours on the wall clock (thread-ms × step wall / total thread-ms). Times grow",
             "when other processes take the cores: read them as shares.", ""]
    for r in rows:
        torch_row = r.get("framework") == "torch"
        lines += [f"## `{r['config']}` {' '.join(r['overrides'])} — batch {r['batch']} × seq {r['seq']}"
                  f"{' — PyTorch' if torch_row else ''} — {throughput.machine_name(r)}", ""]
        if (r.get("machine") or {}).get("recorded"):
            lines += [f"Machine recorded {r['machine']['recorded']}.", ""]
        if torch_row:
            lines.append(f"{r['reference']}, {r['torch_threads']} threads. Step {r['step_s']:.3f} s wall, "
                         f"{r['cpu_s']:.3f} s CPU (profiled); op self time {r['op_ms_total']:.0f} ms (wall); matmuls "
                         f"{r['matmul_gflop_per_step']:.1f} GFLOP (our accountant; the profiler counts "
                         f"{r['profiler_matmul_gflop_per_step']:.1f}) at {r['matmul_gflop_per_s'] or 0:.1f} GFLOP/s "
                         f"while running; GLIBC_TUNABLES={r.get('glibc_tunables') or '—'}; {r['measured_at']}.")
        else:
            lines.append(f"Step {r['step_s']:.3f} s wall, {r['cpu_s']:.3f} s CPU (traced); op thread-time "
                         f"{r['op_ms_total']:.0f} ms; matmuls {r['matmul_gflop_per_step']:.1f} GFLOP at "
                         f"{r['matmul_gflop_per_thread_s'] or 0:.1f} GFLOP per thread-second while running; "
                         f"GLIBC_TUNABLES={r.get('glibc_tunables') or '—'}; {r['measured_at']}.")
        lines += ["", "| kind | forward | backward | update | total | share |", "|---|---|---|---|---|---|"]
        for kind, phases in r["op_ms"].items():
            total = sum(phases.values())
            lines.append(f"| {kind} | {phases['forward']:.1f} | {phases['backward']:.1f} | {phases['update']:.1f} | "
                         f"{total:.1f} | {total / r['op_ms_total']:.0%} |")
        if r.get("top_ops_ms"):
            lines += ["", "Top ops by time (ms per step): " + ", ".join(f"`{k}` {v}" for k, v in r["top_ops_ms"].items())]
        lines.append("")
        if torch_row:
            ours = next((o for o in rows if _key(o) == (*_key(r)[:-1], "jax")), None)
            if ours is not None:
                lines += comparison(ours, r)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="traced steps (after two untimed ones)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--out", default=str(throughput.RESULTS))
    parser.add_argument("--reference", action="store_true",
                        help="profile the PyTorch twin (throughput.py's reference step) instead of ours; run it in "
                             "a process of its own (torch's and XLA's thread pools in one process slow both)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    fn = profile_reference if args.reference else profile
    rows = [fn(spec, args.set, args.batch, args.seq, args.steps) for spec in args.config]
    info = throughput.machine_info(throughput.ROOT)  # after profiling: it starts jax, which the reference must not
    rows = [dict(r, machine=info) for r in rows]
    text = markdown(rows)
    print(text)
    if not args.dry_run:
        write_results(rows, pathlib.Path(args.out))
    return 0


def write_results(rows: list[dict], out: pathlib.Path) -> None:
    """Merges `rows` into `out/profile.{json,md}` by `_key`: a row replaces the one of the same config, batch shape,
    machine and framework; rows of other machines stay."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{NAME}.json"
    merged = {}
    if path.exists():
        for r in json.loads(path.read_text()).get("rows", []):
            merged[_key(r)] = r
    for r in rows:
        merged[_key(r)] = r
    ordered = sorted(merged.values(), key=lambda r: (r["config"], r["batch"], r["seq"], r["overrides"],
                                                     throughput.machine_name(r), r.get("framework", "jax")))
    path.write_text(json.dumps({"benchmark": NAME, "rows": ordered}, indent=1) + "\n")
    (out / f"{NAME}.md").write_text(markdown(ordered))


if __name__ == "__main__":
    sys.exit(main())

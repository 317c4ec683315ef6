"""Generation speed: generated tokens/s of our jitted decoding loop vs Hugging Face `generate` (PyTorch eager, CPU).

    python benchmarks/generate.py                       # greedy, batch 1 and 8, in one run
    python benchmarks/generate.py --batch 1 --rounds 10 --new-tokens 256

One GPT-2-shaped model with random weights (transformers' own initialisation, seeded; no download): 6 layers of
256, 4 heads, a 1024-wide MLP, GPT-2's 50,257-token vocabulary and 1,024 positions. It is saved once as a Hugging
Face checkpoint that both sides load:

* ours: `llm_jax.generate.generate` (greedy) on the model `llm_jax.interop.load_hf` reads — the prefill and the
  whole token loop are one compiled XLA function over the KV cache; the call is timed from the host's token lists to
  the host's numpy result (left padding and transfers included); compilation happens once, before timing;
* the reference: `GPT2LMHeadModel.generate(do_sample=False)` with its KV cache, the default attention
  implementation (SDPA), `torch.inference_mode`, `torch.set_num_threads(cores)`.

Every prompt has its own length (32, 31, …: left-padded, with an attention mask on both sides) and every row
generates exactly `--new-tokens` tokens (no stop token on either side). tokens/s = batch × new tokens / seconds per
call. Both sides must produce the same tokens (the table says how many rows agree): a speed-up from computing
something else would not count.

As `benchmarks/throughput.py` does on a shared machine: each framework runs in its own worker process (XLA's and
torch's thread pools do not meet), calls alternate ABBA with a short pause, medians of the timed calls, and each row
records the share of the machine's CPU time other processes used meanwhile. Writes
`benchmarks/results/generate.{json,md}`, rows merged by (batch, prompt length, new tokens).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import multiprocessing
import os
import pathlib
import statistics
import sys
import tempfile
import time
import traceback

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from throughput import (
    DEFAULT_WORKER_ENV,
    DEFAULT_XLA_FLAGS,
    RESULTS,
    ForeignLoad,
    wait_for_quiet,
)

from llm_jax.eval.report import machine_info

NAME = "generate"
CORES = os.cpu_count() or 1
SHAPE = {"vocab_size": 50257, "n_embd": 256, "n_layer": 6, "n_head": 4, "n_inner": 1024, "n_positions": 1024}


def write_checkpoint(path: pathlib.Path, seed: int) -> int:
    """A random GPT-2 of `SHAPE` (transformers' initialisation) saved at `path`; returns its parameter count."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**SHAPE))
    model.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def prompts_for(batch: int, prompt_len: int, seed: int) -> list[list[int]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.integers(0, SHAPE["vocab_size"], max(1, prompt_len - row)).tolist() for row in range(batch)]


def setup_ours(path, prompts, new_tokens):
    import jax

    from llm_jax.generate import GenerationConfig, decoder_for, generate
    from llm_jax.interop import load_hf

    family, config, params = load_hf(path)
    params = jax.device_put(params)  # resident, as the reference's weights are
    decoder = decoder_for(family, config)
    settings = GenerationConfig(max_new_tokens=new_tokens, stop_token_ids=())
    t0 = time.perf_counter()
    generate(decoder, params, prompts, settings)  # compiles
    compile_s = time.perf_counter() - t0

    def run():
        out = generate(decoder, params, prompts, settings)
        return [row.tolist() for row in out.tokens_BN]

    return run, {"compile_s": compile_s, "implementation": "llm_jax.generate (jax.jit, lax.while_loop)",
                 "xla_flags": os.environ.get("XLA_FLAGS", "")}


def setup_reference(path, prompts, new_tokens):
    import torch
    import transformers

    from llm_jax.generate import left_pad

    torch.set_num_threads(CORES)
    model = transformers.GPT2LMHeadModel.from_pretrained(path).eval()
    model.generation_config.eos_token_id = None  # every row runs to max_new_tokens, as ours
    model.generation_config.pad_token_id = 0
    ids, mask = left_pad(prompts, 0)
    input_ids, attention_mask = torch.tensor(ids, dtype=torch.long), torch.tensor(mask.astype("int64"))

    def run():
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=new_tokens,
                                 do_sample=False)
        new = out[:, ids.shape[1]:].tolist()
        if any(len(row) != new_tokens for row in new):
            raise RuntimeError(f"transformers generated {len(new[0])} tokens, not {new_tokens}")
        return new

    run()  # warm-up (allocations, lazy initialisation)
    return run, {"implementation": f"transformers {transformers.__version__} GPT2LMHeadModel.generate "
                                   f"({model.config._attn_implementation}), torch {torch.__version__}",
                 "torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}


def _worker(kind: str, path: str, batch: int, prompt_len: int, new_tokens: int, seed: int, omp: str, conn) -> None:
    try:
        if kind == "reference" and omp:
            os.environ["OMP_WAIT_POLICY"] = omp  # read by torch's OpenMP runtime when it loads
        prompts = prompts_for(batch, prompt_len, seed)
        run, meta = (setup_ours if kind == "ours" else setup_reference)(path, prompts, new_tokens)
        conn.send(("ready", meta))
        while True:
            if conn.recv() != "run":
                break
            c0, t0 = os.times(), time.perf_counter()
            tokens = run()
            dt, c1 = time.perf_counter() - t0, os.times()
            conn.send(("ok", (dt, (c1.user + c1.system) - (c0.user + c0.system), tokens)))
    except EOFError:
        return
    except Exception:  # noqa: BLE001 - the parent prints it and stops
        conn.send(("error", traceback.format_exc()))


class Worker:
    def __init__(self, ctx, kind: str, *args):
        self.kind = kind
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(kind, *args, child), daemon=True)
        self.process.start()
        child.close()
        self.meta = self._reply()

    def _reply(self):
        status, payload = self.conn.recv()
        if status == "error":
            self.close()
            raise SystemExit(f"{self.kind} worker failed:\n{payload}")
        return payload

    def call(self, cmd: str):
        self.conn.send(cmd)
        return self._reply()

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self.conn.send("stop")
            self.process.join(timeout=30)


def bench_one(ctx, path: str, batch: int, prompt_len: int, new_tokens: int, rounds: int, settle_s: float,
              quiet_wait_s: float, omp: str, seed: int, num_params: int) -> dict:
    print(f"\n== batch {batch}, prompts of {prompt_len}…{max(1, prompt_len - batch + 1)} tokens, {new_tokens} new: "
          "starting workers…", flush=True)
    ours = Worker(ctx, "ours", path, batch, prompt_len, new_tokens, seed, omp)
    ref = Worker(ctx, "reference", path, batch, prompt_len, new_tokens, seed, omp)
    times = {"ours": [], "ref": []}
    cpu = {"ours": [], "ref": []}
    outputs = {}
    try:
        pair = [("ours", ours), ("ref", ref)]
        if quiet_wait_s > 0:
            wait_for_quiet(quiet_wait_s)
        load = ForeignLoad([os.getpid(), ours.process.pid, ref.process.pid])
        for i in range(rounds):
            for name, worker in (pair if i % 2 == 0 else pair[::-1]):  # ABBA
                time.sleep(settle_s)
                dt, cpu_s, tokens = worker.call("run")
                times[name].append(dt)
                cpu[name].append(cpu_s)
                outputs[name] = tokens
        foreign = load.stop()
    finally:
        ours.close()
        ref.close()
    tokens = batch * new_tokens
    ours_s, ref_s = statistics.median(times["ours"]), statistics.median(times["ref"])
    same_rows = sum(a == b for a, b in zip(outputs["ours"], outputs["ref"]))
    row = {
        "batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens, "strategy": "greedy",
        "model": dict(SHAPE), "parameters": num_params, "rounds": rounds,
        "ours_s": ours_s, "ours_s_all": [round(x, 4) for x in times["ours"]], "ours_tokens_per_s": tokens / ours_s,
        "ours_cpu_s": statistics.median(cpu["ours"]), "compile_s": round(ours.meta["compile_s"], 1),
        "reference_s": ref_s, "reference_s_all": [round(x, 4) for x in times["ref"]],
        "reference_tokens_per_s": tokens / ref_s, "reference_cpu_s": statistics.median(cpu["ref"]),
        "ratio": ref_s / ours_s, "cpu_ratio": statistics.median(cpu["ref"]) / statistics.median(cpu["ours"]),
        "identical_rows": f"{same_rows}/{batch}", "ours": ours.meta["implementation"],
        "reference": ref.meta["implementation"], "torch_threads": ref.meta["torch_threads"],
        "omp_wait_policy": ref.meta["omp_wait_policy"], "xla_flags": ours.meta["xla_flags"],
        "foreign_cpu_share": foreign, "loadavg_1m_at_end": os.getloadavg()[0],
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    share = "n/a" if foreign is None else f"{foreign:.0%}"
    print(f"   ours {row['ours_tokens_per_s']:.0f} tok/s ({ours_s:.3f} s/call) | transformers "
          f"{row['reference_tokens_per_s']:.0f} tok/s ({ref_s:.3f} s/call) | ratio {row['ratio']:.2f}× (CPU time "
          f"{row['cpu_ratio']:.2f}×) | identical rows {row['identical_rows']} | other processes' CPU share {share}",
          flush=True)
    return row


def _key(row: dict) -> tuple:
    return row["batch"], row["prompt_len"], row["new_tokens"]


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "# Generation speed: llm_jax vs Hugging Face transformers `generate` (PyTorch eager), CPU",
        "",
        "Greedy decoding with a KV cache on a random GPT-2-shaped model (6 × 256, 4 heads, 50,257-token vocabulary),",
        "prompts of different lengths (left-padded), every row generating the same number of tokens; tokens/s =",
        "batch × new tokens / seconds per call (host lists in, host ids out; our compilation excluded and listed).",
        "The two run in separate worker processes, calls alternating ABBA; medians. `identical rows`: rows whose",
        "generated tokens are the same on both sides. Written by `benchmarks/generate.py`.",
        "",
        "Read a row with its `other load` column (the share of the machine's CPU time other processes used during",
        "the timed calls); the CPU-time ratio is the steadier comparison under load.",
        "",
        "| batch | prompt tokens | new tokens | ours tok/s | ours s/call | transformers tok/s | transformers s/call |"
        " ratio | CPU-time ratio | identical rows | compile s | other load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch']} | {r['prompt_len']}…{max(1, r['prompt_len'] - r['batch'] + 1)} | {r['new_tokens']} | "
            f"{r['ours_tokens_per_s']:.0f} | {r['ours_s']:.3f} | {r['reference_tokens_per_s']:.0f} | "
            f"{r['reference_s']:.3f} | {r['ratio']:.2f}× | {r['cpu_ratio']:.2f}× | {r['identical_rows']} | "
            f"{r['compile_s']} | {_fmt(r.get('foreign_cpu_share'), '.0%')} |")
    lines += ["", "Runs:", ""]
    for r in rows:
        m, v = r["machine"], r["machine"]["versions"]
        lines.append(
            f"- batch {r['batch']} — {r['measured_at']}, commit {m['commit']}; {m['cpu']}, {m['cores']} cores; "
            f"jax {v['jax']}, jaxlib {v['jaxlib']}, flax {v['flax']}; ours: {r['ours']}, XLA_FLAGS=`{r['xla_flags']}`; "
            f"reference: {r['reference']}, {r['torch_threads']} threads, OMP_WAIT_POLICY="
            f"{r.get('omp_wait_policy') or 'default'}; {r['parameters']:,} parameters; {r['rounds']} timed calls "
            f"each (ours {r['ours_s_all']}, transformers {r['reference_s_all']}); load average "
            f"{r['loadavg_1m_at_end']:.1f} at the end.")
    lines.append("")
    return "\n".join(lines)


def write_results(rows: list[dict], info: dict, out_dir: pathlib.Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{NAME}.json"
    merged: dict[tuple, dict] = {}
    if path.exists():
        for row in json.loads(path.read_text()).get("rows", []):
            merged[_key(row)] = row
    for row in rows:
        merged[_key(row)] = dict(row, machine=info)
    ordered = sorted(merged.values(), key=_key)
    path.write_text(json.dumps({"benchmark": NAME, "rows": ordered}, indent=1) + "\n")
    (out_dir / f"{NAME}.md").write_text(markdown(ordered))
    print(f"\nwrote {path} and {out_dir / f'{NAME}.md'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, action="append", help="batch size; repeat (default: 1 and 8)")
    parser.add_argument("--prompt-len", type=int, default=32, help="the longest prompt (row r has r tokens fewer)")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=8, help="timed calls of each framework (alternating)")
    parser.add_argument("--settle", type=float, default=0.2, help="seconds of pause before each call")
    parser.add_argument("--quiet-wait", type=float, default=0.0, metavar="SECONDS",
                        help="before timing, wait up to this long for other processes to leave the CPUs")
    parser.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", ""],
                        help="OpenMP wait policy of the torch worker (see benchmarks/throughput.py)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    parser.add_argument("--dry-run", action="store_true", help="print, write nothing")
    args = parser.parse_args(argv)
    batches = args.batch or [1, 8]
    if args.rounds < 1 or min(batches) < 1 or args.new_tokens < 1:
        raise SystemExit("--rounds, --batch and --new-tokens must be ≥ 1.")
    if args.prompt_len + args.new_tokens - 1 > SHAPE["n_positions"]:
        raise SystemExit(f"--prompt-len + --new-tokens − 1 must fit the model's {SHAPE['n_positions']} positions.")
    flags = os.environ.get("XLA_FLAGS", "")
    for flag in DEFAULT_XLA_FLAGS:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    os.environ["XLA_FLAGS"] = flags  # inherited by the spawned workers
    for name, value in DEFAULT_WORKER_ENV.items():
        os.environ.setdefault(name, value)
    info = machine_info(ROOT)
    print(f"{info['cpu']}, {info['cores']} cores; XLA_FLAGS={flags!r}", flush=True)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        num_params = write_checkpoint(pathlib.Path(tmp), args.seed)
        rows = [bench_one(ctx, tmp, batch, args.prompt_len, args.new_tokens, args.rounds, args.settle,
                          args.quiet_wait, args.omp_wait_policy, args.seed, num_params) for batch in batches]
    if not args.dry_run:
        write_results(rows, info, pathlib.Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

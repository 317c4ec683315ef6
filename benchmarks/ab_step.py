"""A/B of our train step: variants of one config compiled in one process and timed in alternation.

    python benchmarks/ab_step.py --config configs/bert.py:size=mini \\
        --variant rolled:model.scan_unroll=false --variant remat:model.remat=full

Each `--variant NAME:OVERRIDES` is the config with `section.field=value` overrides (comma-separated; `xla.NAME=V`
is an XLA compiler option instead; `patch=P` traces the step with one of the code alternatives in `PATCHES`, the
experiments of benchmarks/NOTES.md that are not config options) and the first variant is always the config as it
is (`default`). All are
compiled first, then their steps run in ABBA order (one step of each, then the same in reverse), so that a
change of machine load — large on a shared VM, where two runs of the same step in separate processes differ by
10–25 % — hits every variant alike. Prints the median step time of each and its speed relative to the first.
Writes nothing: the experiments and their numbers are recorded in benchmarks/NOTES.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import throughput  # noqa: E402  (the same config loading, synthetic batch and jitted step)


def _einsum_projections():
    """The projections as `jnp.einsum` instead of 2-D matmuls (NOTES.md experiment 1)."""
    import jax.numpy as jnp

    from llm_jax.layers import embeddings, linear

    def attend(self, x_BTE):
        return jnp.einsum("BTE,VE->BTV", x_BTE.astype(self.dtype), self.embedding.astype(self.dtype))

    return [(linear, "_as_matmul", lambda eqn: None), (embeddings.Embed, "attend", attend)]


def _no_donation():
    """The train step jitted without donating the state (NOTES.md experiment 5)."""
    import jax
    import numpy as np

    from llm_jax import sharding
    from llm_jax.train import step as step_lib

    def jit_train_step(train_step, shardings, mesh, dummy_batch):
        batch = {k: sharding.batch_sharding(mesh, np.ndim(v)) for k, v in dummy_batch.items()}
        return jax.jit(train_step, in_shardings=(shardings, batch), out_shardings=(shardings, None))

    return [(step_lib, "jit_train_step", jit_train_step)]


def _optax_clip():
    """optax's `clip_by_global_norm` (a divide per update) instead of ours (a multiply; NOTES.md, "The optimizer
    update")."""
    import optax

    from llm_jax.train import optim

    return [(optim, "clip_by_global_norm", optax.clip_by_global_norm)]


PATCHES = {"einsum_projections": _einsum_projections, "no_donation": _no_donation, "optax_clip": _optax_clip}


@contextlib.contextmanager
def patched(names: list[str]):
    """Replaces the attributes of the named patches while a variant is traced and compiled."""
    saved = []
    try:
        for name in names:
            for owner, attr, value in PATCHES[name]():
                saved.append((owner, attr, getattr(owner, attr)))
                setattr(owner, attr, value)
        yield
    finally:
        for owner, attr, value in reversed(saved):
            setattr(owner, attr, value)


def parse_variant(text: str) -> tuple[str, list[str], dict, list[str]]:
    """`name:a.b=1,xla.opt=true,patch=no_donation` → (name, ["a.b=1"], {"opt": True}, ["no_donation"])."""
    name, _, spec = text.partition(":")
    overrides, options, patches = [], {}, []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        key, eq, raw = item.partition("=")
        if not eq:
            raise SystemExit(f"--variant {text!r}: {item!r} is not section.field=value.")
        if key == "patch":
            if raw not in PATCHES:
                raise SystemExit(f"--variant {text!r}: unknown patch {raw!r}; known: {sorted(PATCHES)}.")
            patches.append(raw)
        elif key.startswith("xla."):
            try:
                options[key[4:]] = json.loads(raw)
            except json.JSONDecodeError:
                options[key[4:]] = raw
        else:
            overrides.append(item)
    return name, overrides, options, patches


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--variant", action="append", default=[],
                   help="NAME:section.field=value,xla.option=value,patch=" + "|".join(PATCHES))
    p.add_argument("--set", action="append", default=[], help="override for every variant")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps of each variant")
    args = p.parse_args(argv)

    variants = [("default", [], {}, [])] + [parse_variant(v) for v in args.variant]
    steps = {}
    for name, overrides, options, patches in variants:
        run = throughput.load_run_config(args.config, args.set + overrides)
        batch_np = throughput.synthetic_batch(run, args.batch, args.seq)
        with patched(patches):
            step_fn, meta = throughput.setup_ours(run, batch_np, compiler_options=options or None)
        step_fn()
        step_fn()
        steps[name] = step_fn
        print(f"{name}: compiled in {meta['compile_s']:.1f} s", flush=True)
    times = {name: [] for name in steps}
    order = list(steps)
    for i in range(args.steps):
        for name in (order if i % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["default"])
    print(f"\n{args.config} {' '.join(args.set)} batch {args.batch} × seq {args.seq}, {args.steps} steps each")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:24s} median {med:.3f} s/step   speed vs default {base / med:.3f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())

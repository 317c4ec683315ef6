"""The shots curve: one model's accuracy on one task as the number of labelled examples K grows, by regime.

    python benchmarks/shots.py --model runs/gpt2-tiny --task wordnet-supersense --limit 200
    python benchmarks/shots.py --model runs/bert-tiny --k 0,1,4,16,64,256,all --seeds 0,1,2 --finetune 16,64,256,all
    python benchmarks/shots.py --model MINILM_DIR --label all-MiniLM-L6-v2 --k "" --finetune 1,4,16,64,256,all \
        --finetune-set train.steps=100,train.batch_size=32,data.seq_len=32,optim.learning_rate=1e-4

Regimes (GPT-3 §2, Figure 2.1, and the lecture's zero / few / many-shot):

* **in-context** — K demonstrations in the prompt, no gradient step (`llm_jax.eval.in_context`): for every K whose
  demonstrations reach the model (K = 0 once: it is deterministic; K ≥ 1 over the seeds, which draw the
  demonstrations). Demonstrations that do not fit the context are dropped; the table reports how many stayed;
* **fine-tuning** (`--finetune K,…`) — `llm-jax finetune` on a class-balanced K-example subset per seed
  (`data.train_examples=K`), `all` = the whole training split (many-shot), scored on the same split.

The majority-class baseline is drawn in. Writes `benchmarks/results/shots_<label>.{json,md,png}` with the machine,
versions and commit.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_jax.eval.report import machine_info, machine_line, markdown_table, write_results  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a run / model / Hugging Face directory")
    p.add_argument("--label", default="", help="the model's name in the results (default: the directory's name)")
    p.add_argument("--task", default="wordnet-supersense")
    p.add_argument("--split", default="validation")
    p.add_argument("--k", default="0,1,4,16,64,256,all", help="in-context K values (all = the whole train split)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--limit", type=int, default=200, help="evaluate the split's first N examples (0 = all)")
    p.add_argument("--normalize", default="none")
    p.add_argument("--scorer", default="auto")
    p.add_argument("--finetune", default="", help="also fine-tune at these K (e.g. 16,64,256,all); empty = no")
    p.add_argument("--finetune-steps", type=int, default=150)
    p.add_argument("--finetune-set", default="", help="fine-tuning overrides KEY=VALUE,… of the finetune config "
                   "(e.g. train.batch_size=32,optim.learning_rate=1e-4); the same for every K and seed")
    p.add_argument("--workdir", default=str(ROOT / "runs" / "shots"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    return p.parse_args(argv)


def _mean_std(xs):
    return (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main(argv=None) -> int:
    args = parse_args(argv)
    from llm_jax.data.tasks import TaskConfig, load_task
    from llm_jax.eval.in_context import InContextConfig, evaluate_in_context
    from llm_jax.interop.native import load_pretrained

    label = args.label or pathlib.Path(args.model).resolve().name
    # What the results files name the model: a path relative to the checkout as given, never a machine path.
    shown = args.model if not pathlib.Path(args.model).is_absolute() else f"<{label} directory>"
    family, config, params, tok = load_pretrained(args.model)
    task = load_task(TaskConfig(args.task))
    n_train = len(task.splits["train"])
    seeds = [int(s) for s in args.seeds.split(",")]
    ks = [n_train if k == "all" else int(k) for k in args.k.split(",") if k]
    runs, rows = [], []
    baseline = None
    for k in ks:
        accs, used = [], []
        for seed in (seeds[:1] if k == 0 else seeds):
            t0 = time.time()
            r = evaluate_in_context(family, config, params, tok, task, InContextConfig(
                shots=k, seed=seed, split=args.split, limit=args.limit, normalize=args.normalize, scorer=args.scorer))
            r["seconds"] = round(time.time() - t0, 1)
            runs.append({"regime": "in-context", "k": k, **r})
            baseline = r["majority_baseline"]
            accs.append(r[r["main_metric"]])
            used.append(r["demonstrations_used_mean"])
            print(f"in-context K={k} seed={seed}: {r['main_metric']} {accs[-1]:.4f}, demonstrations used "
                  f"{used[-1]:.1f} ({r['seconds']}s)", flush=True)
        m, s = _mean_std(accs)
        rows.append(["in-context", "all" if k == n_train else k, m, s, len(accs), statistics.mean(used)])
    for k_text in [k for k in args.finetune.split(",") if k]:
        k = n_train if k_text == "all" else int(k_text)
        accs = []
        for seed in seeds:
            work = pathlib.Path(args.workdir) / f"{label}_ft{k_text}_s{seed}"
            cmd = [sys.executable, "-m", "llm_jax.cli", "finetune", "--config",
                   f"finetune:model={args.model},task={args.task}", "--workdir", str(work),
                   "--config.train.progress=False", f"--config.train.steps={args.finetune_steps}",
                   f"--config.train.seed={seed}"]
            if k_text != "all":
                cmd.append(f"--config.data.train_examples={k}")
            cmd += [f"--config.{kv.strip()}" for kv in args.finetune_set.split(",") if kv.strip()]
            if not (work / "results.json").exists():
                subprocess.run(cmd, check=True, cwd=ROOT)
            res = json.loads((work / "results.json").read_text())[args.split]
            accs.append(res[task.spec.main_metric])
            if baseline is None:  # no in-context run (an encoder without an LM head): the fine-tuning runs report it
                baseline = res.get("majority_baseline")
            runs.append({"regime": "fine-tuning", "k": k, "seed": seed, **res})
            print(f"fine-tuning K={k_text} seed={seed}: {task.spec.main_metric} {accs[-1]:.4f}", flush=True)
        m, s = _mean_std(accs)
        rows.append(["fine-tuning", k_text, m, s, len(accs), None])

    if not rows:
        print("Nothing to run: give in-context K values (--k) and/or fine-tuning K values (--finetune).",
              file=sys.stderr)
        return 2
    info = machine_info(ROOT)
    metric = task.spec.main_metric
    regimes = ("in-context" if ks else "") + (" and " if ks and args.finetune else "") + (
        "fine-tuning" if args.finetune else "")
    name = f"shots_{label}"
    md = "\n".join([
        f"# Shots curve: {label} ({family}, {type(config).__module__.split('.')[-1]}) on {args.task}",
        "",
        (f"Regimes: {regimes}. {metric} on the {args.split} split (in-context: its first {args.limit or 'all'} "
         f"examples; fine-tuning: all of it); mean ± std over seeds {seeds} (K = 0: one run). Majority baseline: "
         f"{baseline:.4f}. In-context: demonstrations that do not fit the model's {config.max_seq_len} positions "
         f"are dropped (`used` = per query, mean)."
         + (f" Fine-tuning overrides: `{args.finetune_set}`." if args.finetune_set else "")),
        "",
        markdown_table(["regime", "K", metric, "std", "runs", "used"], rows, floats="{:.4f}"),
        "",
        (f"`python benchmarks/shots.py --model {shown} --label {label} --task {args.task} --limit {args.limit} --k '{args.k}' "
         f"--seeds {args.seeds}" + (f" --finetune {args.finetune}" if args.finetune else "")
         + (f" --finetune-set {args.finetune_set}" if args.finetune_set else "") + "`"),
        "",
        machine_line(info),
    ])
    payload = {"model": shown, "label": label, "family": family, "task": args.task, "split": args.split,
               "limit": args.limit, "metric": metric, "majority_baseline": baseline, "rows": rows, "runs": runs,
               "machine": info}
    js, mdp = write_results(args.out, name, payload, md)
    _plot(pathlib.Path(args.out) / f"{name}.png", rows, baseline, metric, label, args.task, n_train)
    print(md)
    print(f"wrote {js}, {mdp}")
    return 0


def _plot(path, rows, baseline, metric, label, task, n_train):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for regime, marker in (("in-context", "o"), ("fine-tuning", "s")):
        pts = [(n_train if r[1] == "all" else int(r[1]), r[2], r[3]) for r in rows if r[0] == regime]
        if pts:
            x = [max(p[0], 0.5) for p in pts]  # K = 0 drawn at 0.5 on the log axis
            ax.errorbar(x, [p[1] for p in pts], yerr=[p[2] for p in pts], marker=marker, capsize=3, label=regime)
    if baseline is not None:
        ax.axhline(baseline, color="gray", linestyle="--", label="majority baseline")
    ax.set_xscale("log")
    ax.set_xlabel("K labelled examples (0 drawn at 0.5)")
    ax.set_ylabel(metric)
    ax.set_title(f"{label} on {task}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

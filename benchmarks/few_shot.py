"""Zero-, few- and many-shot learning curve: fine-tune one checkpoint on K labelled examples, K = 0 … all.

    python benchmarks/few_shot.py                                  # the defaults below, ~10 min on 2 CPU cores
    python benchmarks/few_shot.py --model runs/demo/pretrain --k 0,16,64,256,all --seeds 0,1,2 --scratch

For every K and seed, `llm-jax finetune` runs from the same checkpoint on a class-balanced K-example subset drawn
with that seed (`data.train_examples=K`, `llm_jax.data.tasks.few_shot_subset`):

* K = 0 is zero-shot: no training; the pretraining model's MLM head scores one verbalizer word per label at
  the [MASK] of a prompt (`llm_jax.eval.cloze`; PET, Schick & Schütze 2021). It is deterministic, so it runs once;
* K ≥ 1 trains for the same number of steps at every K (LM-BFF's protocol, Gao et al. 2021 §6: a fixed budget of
  updates however few the examples), and scores the final params — no model selection on a large labelled
  validation set, which true few-shot learning would not have (Perez et al. 2021);
* `all` is the whole training split under the same budget of steps (unless `--all-steps`).

`--scratch` adds the same runs from random init (same architecture and tokenizer): the gap between the two
curves is what pretraining buys at each K. Without `--model`, the demo's checkpoint (`runs/demo/pretrain`) is
used, and pretrained first with the demo recipe when it does not exist.

Writes `benchmarks/results/few_shot.{json,md,png}`: the mean ± standard deviation over seeds of the test metric
per K, every run's numbers, and the machine, versions and commit.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_jax.eval.report import machine_info, machine_line, markdown_table, write_results  # noqa: E402

NAME = "few_shot"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="", help="checkpoint to fine-tune (run / model / HF directory); default: the "
                   "demo's pretrained tiny BERT, pretrained first if absent")
    p.add_argument("--label", default="", help="the model's name in the results (default: from --model)")
    p.add_argument("--name", default=NAME, help="results file stem: <out>/<name>.{json,md,png}")
    p.add_argument("--task", default="wordnet-supersense")
    p.add_argument("--k", default="0,16,64,256,all", help="comma-separated K values; 0 = zero-shot, all = full split")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=150, help="updates per run at every K ≥ 1")
    p.add_argument("--all-steps", type=int, default=0, help="updates for K=all (0: --steps)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.0, help="peak learning rate (0: configs/finetune.py's choice)")
    p.add_argument("--seq-len", type=int, default=48)
    p.add_argument("--scratch", action="store_true", help="also run every K from random init")
    p.add_argument("--workdir", default=str(ROOT / "runs" / "few_shot"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--fresh", action="store_true", help="delete earlier runs in --workdir first")
    return p.parse_args(argv)


def run_one(args, model: str, k: str, seed: int, scratch: bool, workdir: pathlib.Path) -> dict:
    """One fine-tune (or zero-shot) run; returns its results.json and summary."""
    from llm_jax.config import load_config_file
    from llm_jax.train.finetune import config_from_dict, finetune

    steps = args.all_steps if (k == "all" and args.all_steps) else args.steps
    overrides = {"data.train_examples": -1 if k == "all" else int(k), "data.seq_len": args.seq_len,
                 "train.seed": seed, "train.steps": steps, "train.batch_size": args.batch,
                 "train.eval_every": steps, "train.patience": 0, "train.eval_examples": 200,
                 "train.progress": False, "train.log_every": max(steps // 3, 1), "model.random_init": scratch}
    if args.lr:
        overrides["optim.learning_rate"] = args.lr
    d = load_config_file(f"{ROOT / 'configs' / 'finetune.py'}:model={model},task={args.task}", overrides)
    t0 = time.time()
    results = finetune(config_from_dict(d), workdir)
    summary = json.loads((workdir / "summary.json").read_text())
    return {"k": k, "seed": seed, "init": "random" if scratch else "pretrained", "results": results,
            "train_examples": summary.get("train_examples"), "steps": 0 if k == "0" else steps,
            "seconds": round(time.time() - t0, 1)}


def summarise(runs: list[dict], metric: str) -> list[dict]:
    """Mean and standard deviation over seeds of the test (and validation) metric, per (init, K)."""
    rows = []
    for init in ("pretrained", "random"):
        for k in dict.fromkeys(r["k"] for r in runs):
            sel = [r for r in runs if r["k"] == k and r["init"] == init]
            if not sel:
                continue
            test = [r["results"]["test"][metric] for r in sel]
            val = [r["results"]["validation"][metric] for r in sel]
            rows.append({"init": init, "k": k, "seeds": len(sel), "test_mean": statistics.fmean(test),
                         "test_std": statistics.pstdev(test) if len(test) > 1 else 0.0,
                         "validation_mean": statistics.fmean(val), "train_examples": sel[0]["train_examples"],
                         "majority": sel[0]["results"]["test"].get("majority_baseline")})
    return rows


def plot(rows: list[dict], n_train: int, metric: str, task: str, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x_of = lambda k: n_train if k == "all" else max(int(k), 1)
    for init, style in (("pretrained", "o-"), ("random", "s--")):
        sel = [r for r in rows if r["init"] == init and r["k"] != "0"]
        if sel:
            ax.errorbar([x_of(r["k"]) for r in sel], [r["test_mean"] for r in sel], yerr=[r["test_std"] for r in sel],
                        fmt=style, capsize=3, label=f"fine-tuned from {init} init")
    zero = [r for r in rows if r["k"] == "0" and r["init"] == "pretrained"]
    if zero:
        ax.axhline(zero[0]["test_mean"], color="tab:green", ls=":", label="zero-shot (MLM cloze)")
    if rows and rows[0]["majority"] is not None:
        ax.axhline(rows[0]["majority"], color="grey", ls="-.", lw=1, label="majority class")
    ax.set_xscale("log")
    ax.set_xlabel("labelled training examples K (log scale)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{task}: zero / few / many-shot")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax

    from llm_jax.data.tasks import TaskConfig, load_task

    workroot = pathlib.Path(args.workdir)
    if args.fresh and workroot.exists():
        shutil.rmtree(workroot)
    workroot.mkdir(parents=True, exist_ok=True)
    # Runs differ only in data and seed: identical programs compile once and come from this cache afterwards.
    jax.config.update("jax_compilation_cache_dir", str(workroot / "jax_cache"))
    model = args.model
    if not model:
        from llm_jax import demo

        model = str(demo.pretrain(ROOT / "runs" / "demo"))
    spec = load_task(TaskConfig(name=args.task)).spec
    n_train = len(load_task(TaskConfig(name=args.task)).splits["train"])
    metric = spec.main_metric
    ks = [k.strip() for k in args.k.split(",") if k.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    t0 = time.time()
    runs = []
    for scratch in ([False, True] if args.scratch else [False]):
        for k in ks:
            if k == "0" and scratch:
                continue  # zero-shot from random weights scores chance by construction
            for seed in ([seeds[0]] if k == "0" else seeds):
                tag = f"{'scratch' if scratch else 'pretrained'}-K{k}-seed{seed}"
                run = run_one(args, model, k, seed, scratch, workroot / tag)
                runs.append(run)
                print(f"[few-shot] {tag}: test {metric}={run['results']['test'][metric]:.4f} "
                      f"({run['seconds']:.0f}s)", flush=True)
    rows = summarise(runs, metric)
    info = machine_info(ROOT)
    header = ["init", "K", "train examples", "seeds", f"test {metric} (mean ± std)", f"validation {metric}"]
    table = markdown_table(header, [[r["init"], r["k"], r["train_examples"], r["seeds"],
                                     f"{r['test_mean']:.3f} ± {r['test_std']:.3f}", r["validation_mean"]]
                                    for r in rows])
    demo_model = str(ROOT / "runs" / "demo" / "pretrain")
    model_name = args.label or ("the demo's tiny BERT" if model == demo_model else pathlib.Path(model).name)
    lr = f"peak lr {args.lr}" if args.lr else "configs/finetune.py's learning rate"
    zero = "; K=0 is zero-shot MLM cloze scoring" if "0" in ks else ""
    md = (f"# Zero / few / many-shot on {args.task}\n\nFine-tuned from {model_name}; {args.steps} steps of batch "
          f"{args.batch} at every K ≥ 1 (K=all: {args.all_steps or args.steps}), {lr}, seq_len {args.seq_len}, "
          f"seeds {seeds}{zero}. Majority class: "
          f"{rows[0]['majority']:.3f}.\n\n{table}\n\n![learning curve]({args.name}.png)\n\n"
          f"Total {time.time() - t0:.0f}s on {machine_line(info)}.\n")
    payload = {"task": args.task, "model": model_name, "metric": metric, "settings": {
        k: v for k, v in vars(args).items() if k not in ("workdir", "out", "model")}, "summary": rows, "runs": runs,
        "seconds": round(time.time() - t0, 1), "machine": info}
    write_results(args.out, args.name, payload, md)
    plot(rows, n_train, metric, args.task, pathlib.Path(args.out) / f"{args.name}.png")
    print("\n" + table + f"\n\nwrote {args.out}/{args.name}.{{json,md,png}} in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

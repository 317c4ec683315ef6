"""ELECTRA vs MLM at equal pretraining compute (Clark et al. 2020, Figure 1 / Table 1 at CPU scale).

    python benchmarks/electra_vs_mlm.py --budgets 1.5e12,4.5e12,9e12 --seeds 0,1,2 [--root runs/electra_vs_mlm]
    python benchmarks/electra_vs_mlm.py --quick            # one small budget, one seed, one task (≤ 10 minutes)

For every FLOPs budget and seed it pretrains, on the WordNet part of the bundled corpus:

* **MLM**: BERT-tiny (2 × 128) with dynamic-masking MLM (RoBERTa's objective, no NSP);
* **ELECTRA**: replaced-token detection with a discriminator of exactly BERT-tiny's shape (E = D = 128, so the
  two fine-tuned networks are the same) and a generator at the paper's ratio for small models (¼ of the width);
* optionally the paper's Table 5 ablations (`--objectives mlm,rtd,electra15,replace_mlm,all_tokens_mlm`);
* and, as the reference a pretrained row must beat to show any transfer, the same network fine-tuned from random
  weights (per seed; `--no-random-init` skips it);

each for as many steps as the budget buys by the FLOPs accountant (`llm_jax.flops`, `--convention ours`:
what our step computes; the ELECTRA paper's convention is reported beside it), so the objectives get equal
compute, not equal steps. Every checkpoint is then fine-tuned with one recipe (the same for every objective,
layer-wise LR decay off) on `wordnet-supersense`, `wordnet-wic` and `wordnet-gloss`, and the test accuracy is
reported as mean ± std over the seeds (the seed drives pretraining init, data order and masking, and the
fine-tuning head and order).

Everything lives under `--root`: one tokenizer shared by all runs (`tokenizer/`), the corpus's unigram baseline
(`unigram.json`: the held-out loss a context-free MLM gets), and one ordinary workdir per run
(`pretrain/<objective>-b<budget>-s<seed>`, `finetune/<same>/<task>`). Rerunning skips finished runs and resumes
unfinished ones. Results go to `--out` (default `benchmarks/results/electra_vs_mlm.{md,json,png}`; `--quick`
writes `<root>/electra_vs_mlm_quick.*`).
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import statistics
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

TASKS = ("wordnet-supersense", "wordnet-wic", "wordnet-gloss")
# The CPU pretraining recipe shared by every objective (benchmarks/NOTES.md, "A recipe that learns").
PRETRAIN = {
    "data.vocab_size": 2000, "data.seq_len": 64, "train.batch_size": 16, "objective.max_predictions": 10,
    "optim.learning_rate": 2e-3,
    "model.hidden_dropout": 0.0, "model.attention_dropout": 0.0,
    "train.log_every": 50, "train.eval_batches": 8,
}
# The fine-tuning recipe, identical for every checkpoint and task: one epoch at a high rate (the demo's), batch 32,
# layer-wise decay off (ELECTRA's own recipe would use 0.8; one recipe for all keeps the comparison clean), and the
# pretraining length (64) for every task, so that no fine-tuning position has an untrained position embedding.
FINETUNE = {"data.seq_len": 64, "train.epochs": 1.0, "optim.learning_rate": 1e-3, "optim.layer_decay": 1.0,
            "train.log_every": 100, "train.progress": False, "train.patience": 0}
WARMUP_FRACTION = 0.06  # of the derived steps
# Training rows per task at most (wordnet-gloss has 17k; a class-balanced subset drawn with the seed): bounds the
# study's fine-tuning time.
FINETUNE_MAX_TRAIN = 6000
RECIPES = {  # objective → (recipe, extra overrides)
    "mlm": ("bert:size=tiny,objective=mlm", {}),
    "rtd": ("electra:size=tiny", {"model.embedding_size": 128}),
    "electra15": ("electra:size=tiny,objective=electra15", {"model.embedding_size": 128}),
    "replace_mlm": ("electra:size=tiny,objective=replace_mlm", {"model.embedding_size": 128}),
    "all_tokens_mlm": ("electra:size=tiny,objective=all_tokens_mlm", {"model.embedding_size": 128}),
}
LABELS = {"random_init": "no pretraining (random init)", "mlm": "BERT (MLM)", "rtd": "ELECTRA (RTD)",
          "electra15": "ELECTRA 15 %", "replace_mlm": "Replace MLM", "all_tokens_mlm": "All-Tokens MLM"}
QUICK = {"budgets": [1.5e12], "seeds": [0], "tasks": ("wordnet-supersense",)}

log = logging.getLogger("electra_vs_mlm")


def run_name(objective: str, budget: float, seed: int) -> str:
    return f"{objective}-b{budget:.3g}-s{seed}".replace("+", "")


def pretrain_settings(objective: str, root: pathlib.Path, corpus: str) -> tuple[str, dict[str, Any]]:
    """The recipe and overrides of one objective's pretraining (steps not yet set)."""
    recipe, extra = RECIPES[objective]
    settings = dict(PRETRAIN)
    settings.update(extra)
    settings.update({"data.corpus": corpus, "data.tokenizer": str(root / "tokenizer" / "tokenizer.json"),
                     "train.progress": False})
    return recipe, settings


def resolve(recipe: str, settings: dict[str, Any]):
    """The run config of a recipe with overrides (`llm_jax.config.RunConfig`)."""
    from llm_jax.config import from_dict, load_config_file

    return from_dict(load_config_file(recipe, settings))


def step_flops(cfg, vocab_size: int, special) -> dict[str, float]:
    """One training step's FLOPs of a run config in our convention and the ELECTRA paper's."""
    from llm_jax import flops, models, objectives
    from llm_jax.train.step import abstract_params, count_params

    model_cfg = cfg.model.with_vocabulary(vocab_size, special)
    seq, batch = cfg.data.seq_len, cfg.train.batch_size
    towers = flops.towers_for(cfg.family, model_cfg, cfg.objective, seq)
    shape = objectives.shape_only_objective(cfg.objective.name, vocab_size)
    # The objective's own init inputs: an ablation's extra head is part of the trained parameters.
    n_params = count_params(abstract_params(models.build(cfg.family, model_cfg), shape, shape.dummy_batch(1, 8)))
    return {conv: flops.step_flops_by_convention(conv, towers, batch, seq, num_params=n_params)
            for conv in ("ours", "electra")}


def prepare_root(root: pathlib.Path, max_documents: int = 0) -> tuple[str, Any, Any]:
    """The corpus, the shared tokenizer (trained once) and the unigram baseline under `root` (`max_documents`:
    only the first N documents of each split, for tests)."""
    from llm_jax.data.corpus import load_documents
    from llm_jax.data.tokenizer import BERT_TOKENIZER
    from llm_jax.data.tokenizers.roles import special_ids
    from llm_jax.data.tokenizers.storage import load_tokenizer, save_tokenizer
    from llm_jax.data.unigram import for_tokenizer
    from llm_jax.demo import wordnet_corpus

    corpus = wordnet_corpus(root / "corpus")
    limit = {"max_documents": max_documents or None}
    tok_dir = root / "tokenizer"
    docs = None
    if not (tok_dir / "tokenizer.json").exists():
        docs = load_documents(corpus, "train", **limit)
        tok = BERT_TOKENIZER.train(docs, PRETRAIN["data.vocab_size"], lowercase=True)
        tok_dir.mkdir(parents=True, exist_ok=True)
        save_tokenizer(tok, tok_dir)
    tok = load_tokenizer(tok_dir / "tokenizer.json")
    unigram_file = root / "unigram.json"
    if not unigram_file.exists():
        import dataclasses

        docs = docs or load_documents(corpus, "train", **limit)
        row = for_tokenizer(tok, docs, load_documents(corpus, "validation", **limit), BERT_TOKENIZER)
        unigram_file.write_text(json.dumps(dataclasses.asdict(row), indent=2))
    return corpus, tok, special_ids(tok, BERT_TOKENIZER.roles)


def pretrain_one(objective: str, budget: float, seed: int, root: pathlib.Path, corpus: str, tok, special,
                 convention: str) -> dict[str, Any]:
    """Pretrains (or finds finished, or resumes) one run; returns its row (without fine-tuning)."""
    from llm_jax.train.loop import pretrain

    recipe, settings = pretrain_settings(objective, root, corpus)
    probe = resolve(recipe, {**settings, "train.steps": 1})
    per_step = step_flops(probe, tok.get_vocab_size(), special)
    steps = max(1, int(budget // per_step[convention]))
    warmup = max(1, round(WARMUP_FRACTION * steps))
    settings.update({"train.steps": steps, "optim.warmup_steps": warmup, "train.seed": seed,
                     "train.eval_every": steps, "train.checkpoint_every": max(50, steps // 4)})
    workdir = root / "pretrain" / run_name(objective, budget, seed)
    summary_file = workdir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    if summary.get("end_step") != steps:
        t0 = time.time()
        print(f"[electra_vs_mlm] pretraining {LABELS[objective]}, budget {budget:.1e} FLOPs = {steps} steps, seed "
              f"{seed} → {workdir}", flush=True)
        summary = pretrain(resolve(recipe, settings), workdir, existing="resume")
        summary["wall_seconds"] = time.time() - t0
        summary_file.write_text(json.dumps(summary, indent=2))
    ev = summary.get("eval", {})
    tokens = steps * settings["train.batch_size"] * settings["data.seq_len"]
    return {"objective": objective, "budget": budget, "seed": seed, "steps": steps, "tokens": tokens,
            "flops_ours": steps * per_step["ours"], "flops_electra": steps * per_step["electra"],
            "pretrain_seconds": summary.get("wall_seconds", summary.get("seconds")), "workdir": str(workdir),
            "eval": {k: v for k, v in ev.items() if isinstance(v, (int, float))}}


def finetune_one(row: dict[str, Any], task: str, root: pathlib.Path, max_train: int = FINETUNE_MAX_TRAIN,
                 max_eval: int = 0, random_init: bool = False) -> dict[str, Any]:
    """Fine-tunes one checkpoint on one task (or reads the finished result); `max_eval` > 0 scores only that many
    validation and test examples (`train.final_eval_examples`, for tests; 0 = the whole splits). `random_init`:
    the checkpoint's architecture from random weights instead (`finetune/random-init-s<seed>/<task>`), the
    reference every pretrained row must beat to show transfer."""
    from llm_jax.config import load_config_file
    from llm_jax.train.finetune import config_from_dict, finetune

    name = f"random-init-s{row['seed']}" if random_init else pathlib.Path(row["workdir"]).name
    workdir = root / "finetune" / name / task
    result_file = workdir / "results.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    print(f"[electra_vs_mlm] fine-tuning {name} on {task}", flush=True)
    from llm_jax.data.tasks.bundled import bundled_records

    n_train = len(bundled_records(task, "train", mark=False))
    settings = {**FINETUNE, "train.seed": row["seed"], "data.train_examples": max_train if n_train > max_train else -1,
                "model.random_init": random_init}
    if max_eval:
        settings["train.final_eval_examples"] = max_eval
    cfg = config_from_dict(load_config_file(f"finetune:model={row['workdir']},task={task}", settings))
    t0 = time.time()
    result = finetune(cfg, workdir)
    result["wall_seconds"] = time.time() - t0
    result_file.write_text(json.dumps(result, indent=2))
    return result


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(rows: list[dict[str, Any]], tasks) -> list[dict[str, Any]]:
    """One entry per (budget, objective): means and stds over seeds."""
    groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["budget"], r["objective"]), []).append(r)
    out = []
    for (budget, objective), rs in sorted(groups.items()):
        entry = {"budget": budget, "objective": objective, "seeds": [r["seed"] for r in rs], "steps": rs[0]["steps"],
                 "tokens": rs[0]["tokens"], "flops_ours": rs[0]["flops_ours"], "flops_electra": rs[0]["flops_electra"],
                 "pretrain_seconds": _mean_std([r["pretrain_seconds"] or 0.0 for r in rs])[0]}
        for key in ("eval_mlm_loss", "eval_disc_accuracy", "eval_replaced_rate"):
            vals = [r["eval"][key] for r in rs if key in r["eval"]]
            if vals:
                entry[key] = _mean_std(vals)
        for task in tasks:
            accs = [r["tasks"][task]["test"]["accuracy"] for r in rs if task in r.get("tasks", {})]
            if accs:
                entry[task] = _mean_std(accs)
        out.append(entry)
    return out


def markdown(agg: list[dict[str, Any]], tasks, unigram: dict[str, Any], header: str,
             majority: dict[str, float] | None = None) -> str:
    from llm_jax.eval.report import markdown_table

    def pm(v):
        return f"{v[0]:.3f} ± {v[1]:.3f}" if v else "—"

    rows = []
    for e in agg:
        pre = (f"MLM {e['eval_mlm_loss'][0]:.2f}" if e["objective"] == "mlm" and "eval_mlm_loss" in e else
               f"disc acc {e['eval_disc_accuracy'][0]:.3f} vs {1 - e['eval_replaced_rate'][0]:.3f}"
               if "eval_disc_accuracy" in e else
               f"MLM {e['eval_mlm_loss'][0]:.2f}" if "eval_mlm_loss" in e else "—")
        rows.append([f"{e['budget']:.1e}" if e["budget"] else "0", LABELS[e["objective"]], e["steps"],
                     f"{e['tokens']:,}",
                     f"{e['flops_ours']:.2e}", f"{e['flops_electra']:.2e}", f"{e['pretrain_seconds'] / 60:.1f} min",
                     pre] + [pm(e.get(t)) for t in tasks])
    table = markdown_table(["budget (FLOPs, ours)", "objective", "steps", "tokens", "FLOPs ours", "FLOPs ELECTRA conv.",
                            "pretrain wall", "held-out pretraining metric"] + [f"{t} test acc" for t in tasks], rows)
    chance = ("Majority-class test accuracy: "
              + ", ".join(f"{t} {v:.3f}" for t, v in majority.items() if v is not None) + ". ") if majority else ""
    return (f"{header}\n\n{table}\n\n{chance}Unigram baseline of the corpus under the shared "
            f"WordPiece-{unigram['vocab_size']} tokenizer: held-out cross-entropy {unigram['eval_cross_entropy']:.3f} nats (train entropy "
            f"{unigram['train_entropy']:.3f}); an MLM's held-out loss below it is learning from context. The "
            "discriminator's baseline is the accuracy of answering \"original\" everywhere (1 − replaced rate).\n")


def plot(agg: list[dict[str, Any]], tasks, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for e in agg:
            if e["objective"] == "random_init" and task in e:  # no FLOPs to place it at: a band across the plot
                (mean, std) = e[task]
                ax.axhline(mean, color="grey", linestyle="--", label=LABELS["random_init"])
                ax.axhspan(mean - std, mean + std, color="grey", alpha=0.15)
        for objective in dict.fromkeys(e["objective"] for e in agg if e["objective"] != "random_init"):
            pts = [(e["flops_ours"], *e[task]) for e in agg if e["objective"] == objective and task in e]
            if not pts:
                continue
            x, y, s = zip(*pts)
            ax.errorbar(x, y, yerr=s, marker="o", capsize=3, label=LABELS[objective])
        ax.set_xscale("log")
        ax.set_xlabel("pretraining FLOPs (ours)")
        ax.set_ylabel("test accuracy")
        ax.set_title(task)
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="1.5e12,4.5e12,9e12", help="pretraining FLOPs per run, comma-separated")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--objectives", default="mlm,rtd", help=f"of {sorted(RECIPES)}")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--no-random-init", dest="random_init", action="store_false",
                        help="skip the reference row: the same network fine-tuned from random weights, per seed")
    parser.add_argument("--convention", default="ours", choices=("ours", "electra"),
                        help="the accountant's convention that budgets are spent in")
    parser.add_argument("--root", default="runs/electra_vs_mlm", help="where the runs live (resumable)")
    parser.add_argument("--out", default="", help="results prefix; default benchmarks/results/electra_vs_mlm")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK['budgets'][0]:.0e} FLOPs, seed 0, "
                        "wordnet-supersense only: the demo's ≤ 10-minute comparison")
    # For the script's test: a corpus cut and a fine-tuning subset small enough for seconds.
    parser.add_argument("--max-documents", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--finetune-examples", type=int, default=FINETUNE_MAX_TRAIN, help=argparse.SUPPRESS)
    parser.add_argument("--finetune-eval-examples", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root = pathlib.Path(args.root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    import jax

    if not jax.config.jax_compilation_cache_dir:  # a cache the caller set up (a test session's) is kept
        jax.config.update("jax_compilation_cache_dir", str(root / "jax_cache"))
    budgets = QUICK["budgets"] if args.quick else [float(b) for b in args.budgets.split(",") if b.strip()]
    seeds = QUICK["seeds"] if args.quick else [int(s) for s in args.seeds.split(",") if s.strip()]
    tasks = QUICK["tasks"] if args.quick else tuple(t for t in args.tasks.split(",") if t.strip())
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    unknown = [o for o in objectives if o not in RECIPES] + [t for t in tasks if t not in TASKS]
    if unknown or not budgets or not seeds or min(budgets) <= 0:
        raise SystemExit(f"--objectives must be of {sorted(RECIPES)}, --tasks of {list(TASKS)}, budgets > 0 and "
                         f"seeds non-empty (got unknown {unknown}).")
    out = pathlib.Path(args.out) if args.out else (root / "electra_vs_mlm_quick" if args.quick
                                                    else ROOT / "benchmarks" / "results" / "electra_vs_mlm")
    t_start = time.time()
    corpus, tok, special = prepare_root(root, args.max_documents)
    if args.max_documents:
        PRETRAIN.update({"data.max_documents": args.max_documents, "data.max_eval_documents": args.max_documents})
    unigram = json.loads((root / "unigram.json").read_text())
    rows = []
    for budget in budgets:
        for seed in seeds:
            for objective in objectives:
                row = pretrain_one(objective, budget, seed, root, corpus, tok, special, args.convention)
                row["tasks"] = {task: finetune_one(row, task, root, args.finetune_examples,
                                                   args.finetune_eval_examples) for task in tasks}
                rows.append(row)
    # The no-pretraining reference: each seed's first checkpoint's architecture (every objective fine-tunes the
    # same network) fine-tuned from random weights with the same recipe and seed.
    for seed in seeds if args.random_init else []:
        first = next(r for r in rows if r["seed"] == seed)
        rows.append({"objective": "random_init", "budget": 0.0, "seed": seed, "steps": 0, "tokens": 0,
                     "flops_ours": 0.0, "flops_electra": 0.0, "pretrain_seconds": 0.0, "workdir": first["workdir"],
                     "eval": {}, "tasks": {task: finetune_one(first, task, root, args.finetune_examples,
                                                              args.finetune_eval_examples, random_init=True)
                                           for task in tasks}})
    agg = aggregate(rows, tasks)
    run_seconds = sum((r["pretrain_seconds"] or 0.0) + sum(t.get("wall_seconds", 0.0) for t in r["tasks"].values())
                      for r in rows)
    header = (f"# ELECTRA vs MLM at equal pretraining compute{' (quick)' if args.quick else ''}\n\n"
              f"Budgets {', '.join(f'{b:.1e}' for b in budgets)} FLOPs ({args.convention} convention), seeds "
              f"{seeds}, fine-tuned with one recipe on {', '.join(tasks)}; test accuracy mean ± std over seeds. "
              f"The runs took {run_seconds / 60:.1f} min of wall time in all (pretraining and fine-tuning); this "
              f"invocation {(time.time() - t_start) / 60:.1f} min (finished runs are reused).")
    majority = {t: rows[0]["tasks"][t]["test"].get("majority_baseline") for t in tasks}
    text = markdown(agg, tasks, unigram, header, majority)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = out.with_suffix(".md")
    reading = ""
    if md.exists() and "## Reading" in md.read_text():  # a hand-written reading survives a rerun
        reading = md.read_text()[md.read_text().index("## Reading"):]
    md.write_text(text + ("\n" + reading if reading else ""))
    out.with_suffix(".json").write_text(json.dumps({
        "budgets": budgets, "seeds": seeds, "tasks": list(tasks), "convention": args.convention,
        "pretrain": PRETRAIN, "finetune": FINETUNE, "finetune_max_train": FINETUNE_MAX_TRAIN, "unigram": unigram,
        # Run directories relative to --root: a results file names no machine's paths.
        "runs": [{k: v for k, v in r.items() if k != "tasks"}
                 | {"workdir": str(pathlib.Path(r["workdir"]).relative_to(root)),
                    "tasks": {t: {s: r["tasks"][t].get(s) for s in ("validation", "test")} for t in r["tasks"]}}
                 for r in rows],
        "aggregate": agg, "seconds": time.time() - t_start}, indent=2, default=str))
    plot(agg, tasks, out.with_suffix(".png"))
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Distillation vs MLM alone: a DistilBERT-tiny student distilled from our BERT-tiny, against the same student
trained with MLM only for the same steps, both fine-tuned on wordnet-supersense.

    python benchmarks/distillation.py                          # 1 seed, ~15-25 min on 2 CPU cores
    python benchmarks/distillation.py --student-steps 600 --seeds 0,1,2 --no-random

1. **Teacher**: BERT-tiny (`configs/bert.py:size=tiny`) pretrained with the demo's recipe (`llm_jax.demo.PRETRAIN`:
   MLM + NSP on the WordNet part of the bundled corpus, 4,000-piece vocabulary, seq 64, lr 2e-3; `--teacher-steps`).
2. **Distilled student**: `configs/distilbert.py:size=tiny,teacher=TEACHER` (1 layer, the teacher's layer 0,
   embeddings and MLM head; loss 5·T²·KL + 2·MLM + 1·cosine) for `--student-steps` on the same corpus.
3. **MLM-only student**: the identical run config — same architecture, same `model.init_from=TEACHER` starting
   point, corpus, sequence length, dynamic masking, prediction cap, optimiser, steps and seed — with the objective
   section replaced by `llm_jax.objectives.default_config("mlm")` (the recipe file has no objective switch). The
   only difference from (2) is the teacher's soft targets and the cosine term.
4. **Random-init student** (`--no-random` drops it): the same MLM-only run without `model.init_from`; its
   tokenizer is trained on the same corpus with the same vocabulary size.
5. Each checkpoint (and the teacher) is fine-tuned on `--task` with one recipe (`configs/finetune.py`, a fixed
   `--ft-steps` of batch `--ft-batch` at `--ft-lr`, final params scored on the test split).

Seeds (`--seeds`) apply to every student's pretraining and to every fine-tune; the teacher is pretrained once.
Runs found finished in `--workdir` are reused, so adding a seed reruns only that seed.

Writes `benchmarks/results/distillation.{json,md}`: test accuracy / macro-F1 per model (mean ± std over seeds),
the majority class, the distillation run's three loss terms at its first and last logged step, the MLM loss of
the two student pretraining runs, and the machine, versions and commit.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_jax.eval.report import machine_info, machine_line, markdown_table, write_results  # noqa: E402

NAME = "distillation"
LOSS_KEYS = ("loss", "ce_loss", "mlm_loss", "cos_loss")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="wordnet-supersense")
    p.add_argument("--teacher-steps", type=int, default=600, help="teacher pretraining steps (the demo's 600)")
    p.add_argument("--student-steps", type=int, default=300, help="N: pretraining steps of every student")
    p.add_argument("--student-lr", type=float, default=1e-3, help="peak lr of every student (the tiny recipe's)")
    p.add_argument("--ft-steps", type=int, default=150)
    p.add_argument("--ft-batch", type=int, default=32)
    p.add_argument("--ft-lr", type=float, default=1e-3)
    p.add_argument("--ft-seq-len", type=int, default=48)
    p.add_argument("--seeds", default="0")
    p.add_argument("--no-random", action="store_true", help="skip the random-init student")
    p.add_argument("--workdir", default=str(ROOT / "runs" / NAME))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    return p.parse_args(argv)


def _finished(run: pathlib.Path, steps: int) -> bool:
    summary = run / "summary.json"
    return summary.exists() and json.loads(summary.read_text()).get("end_step") == steps


def _metrics(run: pathlib.Path) -> list[dict]:
    """The logged training rows of a pretraining run (`metrics.jsonl`, rows with a loss)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "loss" in r and "step" in r and not any(k.startswith("eval") for k in r)]


def pretrain_teacher(args, workroot: pathlib.Path) -> pathlib.Path:
    from llm_jax import demo

    return demo.pretrain(workroot / "teacher", {"train.steps": args.teacher_steps})


def student_config(args, teacher: pathlib.Path, corpus: str, kind: str, seed: int) -> dict:
    """The run config of one student: `distill` (the recipe as is), `mlm` (same, objective swapped) or `random`."""
    from llm_jax.config import load_config_file
    from llm_jax.demo import PRETRAIN
    from llm_jax.objectives import default_config

    steps = args.student_steps
    overrides = {"data.corpus": corpus, "data.seq_len": PRETRAIN["data.seq_len"],
                 "data.vocab_size": PRETRAIN["data.vocab_size"],
                 "objective.max_predictions": PRETRAIN["objective.max_predictions"],
                 "optim.learning_rate": args.student_lr, "optim.warmup_steps": max(steps // 20, 1),
                 "train.steps": steps, "train.seed": seed, "train.log_every": max(steps // 12, 1),
                 "train.eval_every": 0, "train.checkpoint_every": steps}
    d = load_config_file(f"{ROOT / 'configs' / 'distilbert.py'}:size=tiny,teacher={teacher}", overrides)
    if kind in ("mlm", "random"):
        distill = d["objective"]
        mlm = default_config("mlm")
        # Same masking as the distillation run: every MLM field it has, copied over.
        d["objective"] = {**mlm, **{k: distill[k] for k in mlm if k != "name" and k in distill}}
    if kind == "random":
        d["model"]["init_from"] = ""
    return d


def pretrain_student(args, teacher, corpus, kind, seed, workroot: pathlib.Path) -> dict:
    from llm_jax.config import from_dict
    from llm_jax.train.loop import pretrain

    run = workroot / f"student-{kind}-seed{seed}"
    t0 = time.time()
    if not _finished(run, args.student_steps):
        pretrain(from_dict(student_config(args, teacher, corpus, kind, seed)), run)
    rows = _metrics(run)
    pick = lambda r: {k: r[k] for k in (*LOSS_KEYS, "step") if k in r}
    return {"kind": kind, "seed": seed, "run": str(run), "first": pick(rows[0]), "last": pick(rows[-1]),
            "seconds": round(time.time() - t0, 1)}


def finetune(args, model: pathlib.Path, label: str, seed: int, workroot: pathlib.Path) -> dict:
    from llm_jax.config import load_config_file
    from llm_jax.train.finetune import config_from_dict, finetune as run_finetune

    workdir = workroot / f"ft-{label}-seed{seed}"
    results_file = workdir / "results.json"
    t0 = time.time()
    if results_file.exists():
        results = json.loads(results_file.read_text())
    else:
        overrides = {"data.seq_len": args.ft_seq_len, "train.steps": args.ft_steps, "train.batch_size": args.ft_batch,
                     "optim.learning_rate": args.ft_lr, "train.seed": seed, "train.eval_every": args.ft_steps,
                     "train.patience": 0, "train.eval_examples": 500, "train.progress": False,
                     "train.log_every": max(args.ft_steps // 3, 1)}
        d = load_config_file(f"{ROOT / 'configs' / 'finetune.py'}:model={model},task={args.task}", overrides)
        results = run_finetune(config_from_dict(d), workdir)
        results_file.write_text(json.dumps(results, indent=2))
    return {"model": label, "seed": seed, "results": results, "seconds": round(time.time() - t0, 1)}


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax

    from llm_jax.demo import wordnet_corpus

    workroot = pathlib.Path(args.workdir)
    workroot.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(workroot / "jax_cache"))
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    kinds = ["distill", "mlm"] + ([] if args.no_random else ["random"])
    t_all = time.time()

    t0 = time.time()
    teacher = pretrain_teacher(args, workroot)
    teacher_rows = _metrics(teacher)
    teacher_info = {"run": str(teacher), "first_loss": teacher_rows[0]["loss"], "last_loss": teacher_rows[-1]["loss"],
                    "seconds": round(time.time() - t0, 1)}
    print(f"[distill] teacher: loss {teacher_info['first_loss']:.3f} → {teacher_info['last_loss']:.3f} "
          f"({teacher_info['seconds']:.0f}s)", flush=True)
    corpus = wordnet_corpus(workroot / "teacher" / "corpus")

    students, fts = [], []
    for seed in seeds:
        fts.append(finetune(args, teacher, "teacher", seed, workroot))
        print(f"[distill] fine-tuned teacher seed {seed}: {fts[-1]['results']['test']}", flush=True)
        for kind in kinds:
            s = pretrain_student(args, teacher, corpus, kind, seed, workroot)
            students.append(s)
            print(f"[distill] student {kind} seed {seed}: {s['first']} → {s['last']} ({s['seconds']:.0f}s)",
                  flush=True)
            fts.append(finetune(args, pathlib.Path(s["run"]), kind, seed, workroot))
            print(f"[distill] fine-tuned {kind} seed {seed}: {fts[-1]['results']['test']} "
                  f"({fts[-1]['seconds']:.0f}s)", flush=True)

    metrics = [m for m in fts[0]["results"]["test"] if m != "majority_baseline"]
    names = {"teacher": f"BERT-tiny teacher (2 layers, {args.teacher_steps} steps MLM+NSP)",
             "distill": f"DistilBERT-tiny, distilled {args.student_steps} steps",
             "mlm": f"DistilBERT-tiny, MLM only {args.student_steps} steps (same init)",
             "random": f"DistilBERT-tiny, MLM only {args.student_steps} steps from random init"}
    summary = []
    for label in ["teacher", *kinds]:
        sel = [f for f in fts if f["model"] == label]
        row = {"model": label, "seeds": len(sel)}
        for split in ("validation", "test"):
            for m in metrics:
                vals = [f["results"][split][m] for f in sel]
                row[f"{split}_{m}_mean"] = statistics.fmean(vals)
                row[f"{split}_{m}_std"] = statistics.pstdev(vals) if len(vals) > 1 else 0.0
        pre = [s for s in students if s["kind"] == label]
        row["pretrain_mlm_loss_last"] = (statistics.fmean(s["last"].get("mlm_loss", s["last"]["loss"]) for s in pre)
                                         if pre else None)
        summary.append(row)
    majority = fts[0]["results"]["test"].get("majority_baseline")

    pm = lambda r, split, m: f"{r[f'{split}_{m}_mean']:.3f} ± {r[f'{split}_{m}_std']:.3f}"
    header = ["model", "seeds", *[f"test {m}" for m in metrics], f"validation {metrics[0]}",
              "student's final pretraining MLM loss"]
    rows = [[names[r["model"]], r["seeds"], *[pm(r, "test", m) for m in metrics], pm(r, "validation", metrics[0]),
             r["pretrain_mlm_loss_last"]] for r in summary]
    rows.append(["majority class", None, majority, *[None] * (len(metrics) - 1), None, None])
    table = markdown_table(header, rows)

    dist = [s for s in students if s["kind"] == "distill"]
    loss_rows = [[f"seed {s['seed']}, step {s[w]['step']} ({w})", *[s[w].get(k) for k in LOSS_KEYS]]
                 for s in dist for w in ("first", "last")]
    loss_table = markdown_table(["distillation run", "loss (weighted sum)", "ce_loss (T²·KL)", "mlm_loss",
                                 "cos_loss"], loss_rows)
    by = {r["model"]: r for r in summary}
    m0 = metrics[0]
    diff = {m: by["distill"][f"test_{m}_mean"] - by["mlm"][f"test_{m}_mean"] for m in metrics}
    per_seed = {seed: next(f for f in fts if f["model"] == "distill" and f["seed"] == seed)["results"]["test"][m0]
                - next(f for f in fts if f["model"] == "mlm" and f["seed"] == seed)["results"]["test"][m0]
                for seed in seeds}
    diffs = list(per_seed.values())
    mean_d = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else None
    ft_noise = statistics.fmean(r[f"test_{m0}_std"] for r in summary) if len(seeds) > 1 else None
    if se is None:
        verdict = ("One seed: the difference cannot be told apart from seed noise unless it is large (the test "
                   f"{m0} of one recipe moves by a few points between seeds; run `--seeds 0,1,2`).")
    else:
        verdict = (f"Mean over {len(diffs)} paired seeds {mean_d:+.3f}, standard error {se:.3f} "
                   f"({abs(mean_d) / se if se else float('inf'):.1f} standard errors); the mean seed-to-seed std of "
                   f"one model's test {m0} is {ft_noise:.3f}. "
                   + ("Distillation is ahead by more than two standard errors." if mean_d > 2 * se else
                      "Distillation is behind by more than two standard errors." if mean_d < -2 * se else
                      "The difference is within two standard errors: not separable from seed noise."))
    info = machine_info(ROOT)
    md = (f"# Distillation vs MLM alone on {args.task}\n\n"
          f"Teacher: BERT-tiny pretrained {args.teacher_steps} steps with the demo's recipe (WordNet part of the "
          f"bundled corpus). Students: DistilBERT-tiny (1 layer, 128 wide, started from the teacher's layer 0, "
          f"embeddings and MLM head), {args.student_steps} steps of batch 32, seq 64, peak lr {args.student_lr}, "
          f"dynamic masking; the distilled one with 5·T²·KL + 2·MLM + 1·cos (T = 2), the MLM-only one with the same "
          f"config and `objective` = mlm. Fine-tuning: {args.ft_steps} steps of batch {args.ft_batch}, lr "
          f"{args.ft_lr}, seq {args.ft_seq_len}, final params; seeds {seeds} (student pretraining and fine-tuning; "
          f"± is the standard deviation over seeds).\n\n{table}\n\n"
          f"Test {m0}, distilled − MLM only: {diff[m0]:+.3f} (per seed: "
          f"{', '.join(f'{s}: {v:+.3f}' for s, v in per_seed.items())}). {verdict}\n\n"
          f"Loss terms logged by the distillation run (`metrics.jsonl`):\n\n{loss_table}\n\n"
          f"Total {time.time() - t_all:.0f}s on {machine_line(info)}.\n")
    payload = {"task": args.task, "settings": {k: v for k, v in vars(args).items() if k not in ("workdir", "out")},
               "teacher": teacher_info, "students": students, "finetunes": fts, "summary": summary,
               "majority_baseline": majority, "test_diff_distill_minus_mlm": diff, "per_seed_diff": per_seed,
               "diff_standard_error": se, "verdict": verdict,
               "seconds": round(time.time() - t_all, 1), "machine": info}
    write_results(args.out, NAME, payload, md)
    print("\n" + table + "\n\n" + loss_table + f"\n\nwrote {args.out}/{NAME}.{{json,md}} in "
          f"{time.time() - t_all:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

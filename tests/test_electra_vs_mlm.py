"""The ELECTRA-vs-MLM study's path (benchmarks/electra_vs_mlm.py) at a tiny budget: steps derived from the FLOPs
budget per objective, fine-tuning, the results files, and a rerun that reuses every finished run."""

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _study():
    spec = importlib.util.spec_from_file_location("electra_vs_mlm", ROOT / "benchmarks" / "electra_vs_mlm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_study_runs_resumes_and_spends_the_budget(tmp_path):
    study = _study()
    budget = 1.5e10
    argv = ["--budgets", f"{budget}", "--seeds", "0", "--objectives", "mlm,rtd", "--tasks", "wordnet-supersense",
            "--root", str(tmp_path / "root"), "--out", str(tmp_path / "res"), "--max-documents", "150",
            "--finetune-examples", "40", "--finetune-eval-examples", "100"]
    assert study.main(argv) == 0
    results = json.loads((tmp_path / "res.json").read_text())
    runs = {r["objective"]: r for r in results["runs"]}
    assert set(runs) == {"mlm", "rtd", "random_init"}
    # The reference: the same network fine-tuned from random weights, no pretraining FLOPs.
    scratch = runs.pop("random_init")
    assert scratch["flops_ours"] == 0 and 0 <= scratch["tasks"]["wordnet-supersense"]["test"]["accuracy"] <= 1
    for r in runs.values():
        per_step = r["flops_ours"] / r["steps"]
        # As many steps as the budget buys, and no more.
        assert r["flops_ours"] <= budget < r["flops_ours"] + per_step
        assert r["flops_electra"] > 0 and r["tokens"] == r["steps"] * 16 * 64
        assert 0 <= r["tasks"]["wordnet-supersense"]["test"]["accuracy"] <= 1
    # ELECTRA's step (generator + discriminator) costs more than BERT's: fewer steps for the same budget.
    assert runs["rtd"]["steps"] < runs["mlm"]["steps"]
    assert (tmp_path / "res.png").stat().st_size > 0
    text = (tmp_path / "res.md").read_text()
    assert "ELECTRA (RTD)" in text and "BERT (MLM)" in text and "Unigram baseline" in text
    assert "no pretraining (random init)" in text and "Majority-class test accuracy: wordnet-supersense" in text
    # A rerun finds every run finished: nothing is trained or fine-tuned again.
    stamps = {p: p.stat().st_mtime for p in (tmp_path / "root").glob("*/*/summary.json")}
    stamps |= {p: p.stat().st_mtime for p in (tmp_path / "root").glob("finetune/*/*/results.json")}
    assert len(stamps) == 5  # 2 pretraining runs, 3 fine-tuning runs (MLM, ELECTRA, random init)
    assert study.main(argv) == 0
    assert all(p.stat().st_mtime == t for p, t in stamps.items())

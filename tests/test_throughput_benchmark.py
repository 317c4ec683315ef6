"""`benchmarks/throughput.py`: the verdict rule, a row for every family, and each new row's two steps (ours and
the PyTorch twin) run for a few steps on tiny shapes. Nothing here asserts a time."""

import json
import math
import os
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import throughput  # noqa: E402

from llm_jax import models  # noqa: E402

# The new rows' objectives at CPU test size: (config, overrides). A rolled layer scan compiles faster.
TINY = {
    "gpt2": ("configs/gpt.py:version=2,size=tiny", ["model.scan_unroll=false"]),
    "electra": ("configs/electra.py:size=tiny", ["model.scan_unroll=false"]),
    "t5": ("configs/t5.py:size=tiny,optim=adamw", ["model.scan_unroll=false"]),
    "xlnet": ("configs/xlnet.py:size=tiny", ["model.scan_unroll=false"]),
}


def test_verdict_needs_every_trial_on_one_side():
    assert throughput.verdict([1.10, 1.20, 1.05, 1.30, 1.15]) == "faster"
    assert throughput.verdict([0.90, 0.80, 0.95, 0.97, 0.85]) == "slower"
    assert throughput.verdict([1.10, 1.20, 0.98, 1.30, 1.15]) == "inconclusive"  # spread wider than the effect
    assert throughput.verdict([1.10, 1.20, 1.05, 1.30]) == "inconclusive"  # fewer than 5 trials
    s = throughput.ratio_summary([1.0, 1.4, 1.1, 1.2, 1.3])
    assert (s["ratio"], s["ratio_min"], s["ratio_max"]) == (1.2, 1.0, 1.4)
    assert s["ratio_iqr"] == pytest.approx([1.1, 1.3])
    assert s["verdict"] == "inconclusive"  # a trial at exactly 1.0 is no evidence either way


def test_reruns_agree_when_each_median_is_inside_the_other_spread():
    first = {"ratio": 1.20, "ratio_min": 1.10, "ratio_max": 1.30}
    assert throughput.reruns_agree({"ratio": 1.25, "ratio_min": 1.15, "ratio_max": 1.40}, first)
    assert not throughput.reruns_agree({"ratio": 1.35, "ratio_min": 1.15, "ratio_max": 1.40}, first)  # outside 1.30
    assert not throughput.reruns_agree({"ratio": 1.25, "ratio_min": 1.22, "ratio_max": 1.28}, first)  # 1.20 outside
    assert throughput.reruns_agree({"ratio": None}, first) is None


def test_how_often_the_rules_fail_two_runs_of_one_distribution():
    """What the reproducibility table's two rules say about two runs of 5 trials drawn from one distribution (no
    drift at all): the strict rule fails ~29 % of the time (reruns_agree's docstring), the rank test at
    RERUN_ALPHA ~3 % (its exact p-values are discrete)."""
    rng = np.random.default_rng(0)
    strict, ranks = [], []
    for _ in range(2000):
        runs = [{"ratio_trials": list(x), "ratio": float(np.median(x)), "ratio_min": x.min(), "ratio_max": x.max()}
                for x in rng.normal(1.2, 0.05, size=(2, 5))]
        strict.append(throughput.reruns_agree(*runs))
        ranks.append(throughput.rerun_p(*runs) >= throughput.RERUN_ALPHA)
    assert np.mean(strict) == pytest.approx(0.71, abs=0.03)
    assert np.mean(ranks) == pytest.approx(0.968, abs=0.015)


def test_rerun_rank_test_separates_shifted_runs_only():
    """The rank test: interleaved trials are one distribution (p = 1 here); two runs whose every trial lies on
    either side differ (p = 2/252, the smallest of 5 against 5); a run without trials gives no p."""
    first = {"ratio": 1.2, "ratio_trials": [1.10, 1.15, 1.20, 1.25, 1.30]}
    same = {"ratio": 1.2, "ratio_trials": [1.12, 1.17, 1.21, 1.23, 1.28]}
    shifted = {"ratio": 1.4, "ratio_trials": [1.31, 1.35, 1.40, 1.45, 1.50]}
    assert throughput.rerun_p(same, first) > 0.5
    assert throughput.rerun_p(shifted, first) == pytest.approx(2 / 252)
    assert throughput.rerun_p(shifted, {"ratio": 1.2}) is None
    few = {"ratio": 1.4, "ratio_trials": [1.31, 1.35, 1.40]}
    assert throughput.rerun_p(few, {"ratio": 1.2, "ratio_trials": [1.10, 1.15, 1.20]}) is None  # p ≥ 0.1 whatever


def test_every_family_has_a_row_with_a_batch_and_a_reference():
    """Each registered family's pretraining step has a row at both sizes, whose objective has a synthetic batch
    layout and a PyTorch twin (a new family adds one `ROWS` entry, and entries for a new objective)."""
    row_families = {}
    for name, sizes in throughput.ROWS.items():
        assert set(sizes) - {"oracle"} == {"mini", "base"}, name
        for spec in (sizes["mini"], sizes["base"]):
            run = throughput.load_run_config(spec, [])
            row_families.setdefault(run.family, name)
            objective = throughput.make_objective_for(run)
            throughput._entry_for(throughput.BATCH_LAYOUTS, objective, "layout", "BATCH_LAYOUTS")
            throughput._owner(objective)
            assert run.optim.name == "adamw", spec  # the reference step is AdamW
    missing = sorted(set(models.FAMILY_NAMES) - set(row_families))
    assert not missing, f"families without a throughput row: {missing} (add them to ROWS)"


@pytest.mark.parametrize("row", sorted(TINY))
def test_synthetic_batch_layout(row):
    spec, overrides = TINY[row]
    run = throughput.load_run_config(spec, overrides)
    objective = throughput.make_objective_for(run)
    batch = throughput.synthetic_batch(run, 3, 32)
    assert set(batch) == set(objective.dummy_batch(3, 32))
    for key, value in objective.dummy_batch(3, 32).items():
        assert batch[key].shape == value.shape and batch[key].dtype == value.dtype, key
    ids = np.concatenate([v.ravel() for k, v in batch.items() if v.dtype.kind == "i"])
    assert ids.min() >= 0 and ids.max() < run.model.vocab_size
    if "targets" in batch and not {"decoder_inputs", "perm_mask"} & set(batch):  # causal LM: inputs shifted by one
        np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    if "decoder_inputs" in batch:  # teacher forcing: the targets shifted right behind the start id
        np.testing.assert_array_equal(batch["decoder_inputs"][:, 1:], batch["targets"][:, :-1])
        assert (batch["decoder_inputs"][:, 0] == objective.special.pad).all()
        assert (batch["targets"][:, -1] == objective.special.eos).all()
        assert np.isin(batch["inputs"], objective.special.sentinels).any(axis=1).all()
    if "mlm_positions" in batch:
        pos = batch["mlm_positions"]
        assert (np.diff(pos, axis=1) > 0).all() and pos.min() >= 1
        assert (np.take_along_axis(batch["inputs"], pos, 1) == objective.special.mask).all()
    if "perm_mask" in batch:  # permutation LM: `reuse ++ A <sep> B <sep> <cls>`, the objective's own draw
        reuse = objective.cfg.lengths(32)[0]
        assert (batch["inputs"][:, -1] == objective.special.cls).all() and (batch["segment_ids"][:, -1] == 2).all()
        assert ((batch["inputs"] == objective.special.sep).sum(1) == 2).all()
        assert batch["perm_mask"][:, :reuse, reuse:].all()  # the reused part never sees the new one
        mapping = batch["target_mapping"]
        np.testing.assert_array_equal(mapping.sum(-1), batch["weights"])  # one-hot rows where a prediction is
        assert batch["weights"].sum() > 0
        where = mapping.argmax(-1)
        np.testing.assert_array_equal(np.take_along_axis(batch["inputs"], where, 1) * batch["weights"],
                                      batch["targets"] * batch["weights"])
        rows_BPT = np.take_along_axis(batch["perm_mask"], where[..., None], 1)
        own_BP = np.take_along_axis(rows_BPT, where[..., None], 2)[..., 0]
        assert own_BP[batch["weights"] > 0].all()  # a prediction does not see its own token


@pytest.mark.parametrize("row", sorted(TINY))
def test_reference_step_mirrors_ours(row, require):
    """Both steps run on the same batch: the same parameter count and the same weights exempt from decay, first
    losses of random models within a few percent (the same loss on both sides), ours' learning rate schedule
    followed by the reference (its first step at learning rate 0 changes nothing)."""
    require("torch")
    require("transformers")
    import torch

    spec, overrides = TINY[row]
    run = throughput.load_run_config(spec, overrides)
    batch = throughput.synthetic_batch(run, 2, 32)
    ours_step, ours = throughput.setup_ours(run, batch, schedule_steps=3)
    assert ours["lr_schedule"][0] == 0.0 and ours["lr_schedule"][1] > 0  # warming up
    ref_step, ref = throughput.setup_reference(run, batch, lr_schedule=ours["lr_schedule"])
    assert ref["parameters"] == ours["parameters"]
    assert ref["no_decay_parameters"] == ours["no_decay_parameters"] > 0
    ours_losses = [ours_step(i) for i in range(3)]
    params = [p for m in ref_step.models.values() for p in m.parameters()]
    before = [p.detach().clone() for p in params]
    ref_losses = [ref_step(0)]
    assert all(torch.equal(b, p) for b, p in zip(before, params))  # learning rate 0 at step 0, as ours
    ref_losses += [ref_step(i) for i in (1, 2)]
    assert not any(torch.equal(b, p) for b, p in zip(before, params) if b.ndim == 2)  # then every matrix moves
    assert all(math.isfinite(x) for x in ours_losses + ref_losses)
    assert ref_losses[0] == pytest.approx(ours_losses[0], rel=0.05)


def test_trials_split_over_rounds():
    assert throughput.split_trials(5, 1) == [5]
    assert throughput.split_trials(5, 5) == [1] * 5
    assert throughput.split_trials(7, 3) == [3, 2, 2]
    for trials, rounds in ((5, 6), (5, 0)):
        with pytest.raises(SystemExit, match="--rounds"):
            throughput.split_trials(trials, rounds)


def test_script_writes_trials_and_verdict(tmp_path, require):
    """The script's own path (worker processes set up side by side, trials in two rounds with fresh workers and the
    shared compilation cache, results files) on one tiny row: 2 trials give no verdict."""
    require("torch")
    require("transformers")
    spec, overrides = TINY["gpt2"]
    args = ["--config", spec, "--batch", "2", "--seq", "16", "--trials", "2", "--rounds", "2", "--steps", "1",
            "--warmup", "1", "--settle", "0", "--out", str(tmp_path)]
    for item in overrides:
        args += ["--set", item]
    assert throughput.main(args) == 0
    (row,) = json.loads((tmp_path / "throughput.json").read_text())["rows"]
    assert len(row["ratio_trials"]) == 2 and row["verdict"] == "inconclusive"
    assert row["rounds"] == 2 and row["trial_rounds"] == [1, 2]
    assert [len(steps) for steps in row["ours_steps_s_rounds"]] == [2, 2]  # each round: 1 warm-up + 1 timed step
    assert row["ours_steps_s_rounds"][1][1] == row["ours_step_s_trials"][1]
    assert set(row["peak_detail"]) == {"jnp_matmul_f32_before", "jnp_matmul_f32_after", "torch_matmul_f32_4096"}
    assert "| 2×16 | 2 / 2 |" in (tmp_path / "throughput.md").read_text()
    assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    assert len(row["loadavg_before"]) == 3 and row["parameters"] > 0
    assert "inconclusive" in (tmp_path / "throughput.md").read_text()
    # A rerun of the row keeps the run it replaces, for the reproducibility table.
    rerun = dict(row, ratio=row["ratio_max"] + 1.0, ratio_min=row["ratio_max"] + 0.5, ratio_max=row["ratio_max"] + 2,
                 measured_at="2099-01-01T00:00:00+00:00")
    throughput.write_results([rerun], row["machine"], tmp_path)
    (again,) = json.loads((tmp_path / "throughput.json").read_text())["rows"]
    assert again["measured_at"] == "2099-01-01T00:00:00+00:00" and again["previous_run"]["measured_at"] == row["measured_at"]
    assert again["previous_run"]["ratio"] == row["ratio"] and again["reruns_agree"] is False
    assert again["previous_run"]["ratio_trials"] == row["ratio_trials"]
    assert again["rerun_p"] is None  # 2 trials against 2 cannot separate two runs
    assert "| inconclusive / inconclusive |" in (tmp_path / "throughput.md").read_text()
    # The same row measured on another CPU is a row of its own: it replaces nothing and is nobody's rerun.
    elsewhere = dict(row["machine"], cpu="Another CPU")
    later = "2100-01-01T00:00:00+00:00"  # the newest machine's table comes first
    throughput.write_results([dict(row, measured_at=later)], elsewhere, tmp_path)
    rows = json.loads((tmp_path / "throughput.json").read_text())["rows"]
    assert {r["measured_at"] for r in rows} == {"2099-01-01T00:00:00+00:00", later}
    (other,) = [r for r in rows if r["machine"]["cpu"] == "Another CPU"]
    assert "previous_run" not in other and "rerun_p" not in other
    text = (tmp_path / "throughput.md").read_text()
    assert f"## {throughput.machine_name(other)}" in text and f"## {throughput.machine_name(again)}" in text
    assert text.count("| 2×16 | 2 / 2 |") == 2 and text.count("| inconclusive / inconclusive |") == 1
    assert text.index(f"## {throughput.machine_name(other)}") < text.index(f"## {throughput.machine_name(again)}")
    # Another core count is another machine too.
    throughput.write_results([dict(row, measured_at="more cores")], dict(row["machine"], cores=64), tmp_path)
    assert len(json.loads((tmp_path / "throughput.json").read_text())["rows"]) == 3


@pytest.mark.skipif(not os.environ.get("LLM_JAX_TXL_ORACLE_PYTHON"),
                    reason="the Transformer-XL reference needs an environment with transformers 4.37.2: set "
                           "LLM_JAX_TXL_ORACLE_PYTHON to its python (tests/fixtures/make_transfo_xl_fixtures.py)")
def test_transfo_xl_reference_runs_in_its_oracle_environment(tmp_path, require):
    """The Transformer-XL row's reference: `TransfoXLLMHeadModel` of transformers 4.37.2 in a worker started with
    the oracle environment's interpreter, the memory carried across steps; same parameter count and decay mask as
    ours (the row refuses otherwise), first losses of random models within a few percent."""
    require("torch")
    args = ["--config", "configs/transfo_xl.py:size=tiny", "--batch", "2", "--seq", "16", "--trials", "2",
            "--steps", "1", "--warmup", "1", "--settle", "0", "--out", str(tmp_path),
            "--oracle-python", os.environ["LLM_JAX_TXL_ORACLE_PYTHON"]]
    assert throughput.main(args) == 0
    (row,) = json.loads((tmp_path / "throughput.json").read_text())["rows"]
    assert "transformers 4.37.2 TransfoXLLMHeadModel" in row["reference"]
    assert row["reference_loss_first_last"][0] == pytest.approx(row["ours_loss_first_last"][0], rel=0.05)
    assert len(row["ratio_trials"]) == 2


def test_plm_reference_loss_is_ours_with_the_same_weights(require):
    """XLNet's PyTorch twin computes ours' loss, not just a close one: with ours' random weights exported to
    `XLNetLMHeadModel` and no dropout, the two losses and the memories they carry agree over three steps (the
    second and third read the memory of the one before)."""
    torch = require("torch")
    transformers = require("transformers")
    import tempfile

    import flax.linen as nn
    import jax

    from llm_jax.interop.hf import save_hf

    spec, overrides = TINY["xlnet"]
    run = throughput.load_run_config(spec, [*overrides, "model.hidden_dropout=0.0", "model.attention_dropout=0.0"])
    batch = throughput.synthetic_batch(run, 2, 32)
    objective = throughput.make_objective_for(run)
    assert objective.cfg.mem_len > 0
    model = models.build(run.family, run.model)
    args, kwargs = objective.init_inputs(batch)
    params = nn.meta.unbox(model.init({"params": jax.random.key(0)}, *args, **kwargs)["params"])
    loss_fn = objective.make_loss(model)
    carry = objective.init_carry(2, run.model)
    with tempfile.TemporaryDirectory() as d:
        save_hf(run.family, run.model, jax.tree.map(np.asarray, params), d)
        hf = transformers.XLNetLMHeadModel.from_pretrained(d).eval()
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}
    t = {k: v.float() if v.is_floating_point() else v if v.dtype == torch.bool else v.long() for k, v in t.items()}
    state: dict = {}
    losses = []
    for _ in range(3):
        ours, (_, carry) = loss_fn(params, batch, jax.random.key(1), carry=carry, deterministic=True)
        with torch.no_grad():
            ref = throughput.reference_plm_loss(objective, {"model": hf}, {}, t, state)
        np.testing.assert_allclose(float(ref), float(ours), rtol=1e-5)
        theirs_LMBD = np.stack([m.numpy() for m in state["mems"]])
        np.testing.assert_allclose(theirs_LMBD, np.asarray(carry["mems"]).transpose(1, 2, 0, 3), atol=1e-5)
        losses.append(float(ours))
    assert losses[1] != losses[0]  # the memory changed what the second step reads

"""Transformer-XL: parameter counts equal transformers 4.37.2's, parity with its outputs over two segments with memory
(adaptive softmax with div_val > 1, one table sliced into clusters, a plain tied softmax with shared u/v), export that
round-trips tensor for tensor, memory equivalence, the ordered-stream objective, FLOPs against XLA, the recipe and the
CLI with a resume that reproduces the uninterrupted run bitwise, and evaluation with memory.

The oracle's outputs are fixtures (`tests/fixtures/make_transfo_xl_fixtures.py` says why and how to rerun it).
"""

import dataclasses
import json
import pathlib
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import load_file

from llm_jax import cli, flops, models, objectives
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.eval import recurrent
from llm_jax.interop import load_hf, load_hf_with_report, save_hf
from llm_jax.layers.adaptive import capacities, cluster_bounds
from llm_jax.models import transfo_xl
from llm_jax.objectives.segment_clm import ordered_streams
from llm_jax.train.metrics import read_metrics
from llm_jax.train.step import abstract_params, count_params

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "transfo_xl"
MODEL_TOL = {"rtol": 1e-4, "atol": 1e-4}
NAMES = ("adaptive", "sliced", "plain")


def _count(cfg) -> int:
    objective = objectives.shape_only_objective("segment_clm", cfg.vocab_size)
    return count_params(abstract_params(models.build("transfo_xl", cfg), objective, objective.dummy_batch(1, 8)))


# ------------------------------------------------------------------------------------- counts, contract


def test_preset_counts_equal_transformers_4_37():
    # reference/figures.md §2: TransfoXLLMHeadModel built from the same configs (tied weights counted once).
    assert _count(transfo_xl.PRESETS["transfo-xl-wt103-base"]) == 151_119_838
    assert _count(transfo_xl.PRESETS["transfo-xl-wt103-large"]) == 285_205_322
    # The fixtures' odd shapes, counted by the oracle when it wrote them.
    for name in NAMES:
        oracle = json.loads((FIXTURES / name / "oracle.json").read_text())
        assert oracle["transformers"] == "4.37.2"
        _, cfg, _ = load_hf(FIXTURES / name)
        assert _count(cfg) == oracle["parameters"], name


def test_family_contract_and_config_errors():
    assert models.check_family(transfo_xl) == []
    assert models.family_module("transfo_xl") is transfo_xl and transfo_xl.LM_KIND == "causal"
    assert objectives.objective_class("segment_clm").data_order == "ordered"
    with pytest.raises(ValueError, match="must increase strictly"):
        models.make_config("transfo_xl", vocab_size=100, cutoffs=[50, 40], tie_projs=[False, True, True])
    with pytest.raises(ValueError, match="tie_projs has 2 entries for 4 clusters"):
        models.make_config("transfo_xl", tie_projs=[False, True])
    with pytest.raises(ValueError, match="pre_lnorm=True is not supported"):
        transfo_xl.config_from_hf({**transfo_xl.config_to_hf(transfo_xl.PRESETS["transfo-xl-tiny"]), "pre_lnorm": True})
    cfg = transfo_xl.PRESETS["transfo-xl-mini"]
    assert transfo_xl.config_from_hf(transfo_xl.config_to_hf(cfg)) == cfg
    # A smaller word-level vocabulary keeps the clusters that fit.
    small = cfg.with_vocabulary(3000, SpecialIds(eos=0, unk=1))
    assert (small.cutoffs, small.tie_projs, small.eos_token_id) == ((2000,), (False, True), 0)


# -------------------------------------------------------------------------------------- HF parity


def _stacked_mems(memory_BLMD):
    """Ours `[B, L, M, D]` → transformers' `[L, M, B, D]`."""
    return np.asarray(memory_BLMD).transpose(1, 2, 0, 3)


def _hf_order(labels, cfg):
    """The order of 4.37.2's `losses` (adaptive softmax without keep_order): grouped by cluster, stably."""
    bounds = cluster_bounds(cfg.vocab_size, cfg.cutoffs)
    cluster = np.searchsorted([r for _, r in bounds], labels.reshape(-1), side="right")
    return np.argsort(cluster, kind="stable")


@pytest.fixture(scope="session")
def parity():
    """Each fixture model imported and run over its two segments, with and without labels (one jitted program per
    model: the second segment reads the first one's memory inside it)."""
    out = {}
    for name in NAMES:
        loaded = load_hf_with_report(FIXTURES / name)
        cfg, params = loaded.config, loaded.params
        # Why a rolled layer scan: the same computation, compiled faster (the params layout does not change).
        model = models.build("transfo_xl", dataclasses.replace(cfg, scan_unroll=False))
        ref = dict(np.load(FIXTURES / name / "outputs.npz"))
        tokens = [ref[f"tokens_{s}"].astype(np.int32) for s in (1, 2)]
        labels = [np.concatenate([x[:, 1:], x[:, :1]], axis=1) for x in tokens]  # the next token (last unused)

        @jax.jit
        def run(p, tokens, labels, model=model, cfg=cfg):
            memory = cfg.init_memory(2)["memory"]  # 4.37.2's first segment: zeros (init_mems)
            results = []
            for x, y in zip(tokens, labels):
                o = model.apply({"params": p}, x, memory=memory)
                results.append((o, model.apply({"params": p}, x, labels_BT=y, memory=memory).nll_BT))
                memory = o.memory
            return results

        out[name] = (loaded, ref, jax.tree.map(np.asarray, run(params, tokens, labels)))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_import_matches_transformers_4_37_over_two_segments(parity, name):
    loaded, ref, results = parity[name]
    assert loaded.family == "transfo_xl" and loaded.report.initialized == () and loaded.report.unexpected == ()
    assert loaded.report.ignored == ("transformer.pos_emb.inv_freq",)
    for s, (out, nll) in enumerate(results, start=1):
        np.testing.assert_allclose(out.log_probs_BTV, ref[f"log_probs_{s}"], **MODEL_TOL)
        np.testing.assert_allclose(out.hidden_BTD, ref[f"hidden_{s}"], **MODEL_TOL)
        np.testing.assert_allclose(_stacked_mems(out.memory), ref[f"mems_{s}"], **MODEL_TOL)
        tokens = ref[f"tokens_{s}"]
        ours = nll[:, :-1].reshape(-1)[_hf_order(tokens[:, 1:], loaded.config)]
        np.testing.assert_allclose(ours, ref[f"losses_{s}"], **MODEL_TOL)
        # nll_BT is the log-probability of the label under the full distribution.
        np.testing.assert_allclose(nll[:, :-1], -np.take_along_axis(out.log_probs_BTV[:, :-1], tokens[:, 1:, None], -1)[..., 0],
                                   **MODEL_TOL)
    assert ref["mems_1"].shape[1] == loaded.config.mem_len


@pytest.mark.parametrize("name", NAMES)
def test_export_round_trips_tensor_for_tensor(parity, tmp_path, name):
    loaded = parity[name][0]
    save_hf("transfo_xl", loaded.config, loaded.params, tmp_path)
    ours, theirs = load_file(tmp_path / "model.safetensors"), load_file(FIXTURES / name / "model.safetensors")
    assert set(theirs) - set(ours) == {"transformer.pos_emb.inv_freq"}  # a buffer 4.37.2 recomputes
    assert set(ours) <= set(theirs)
    for key, value in ours.items():
        np.testing.assert_array_equal(value, theirs[key], err_msg=key)
    written = json.loads((tmp_path / "config.json").read_text())
    original = json.loads((FIXTURES / name / "config.json").read_text())
    for key in ("cutoffs", "d_model", "d_embed", "div_val", "n_head", "d_head", "tie_projs", "untie_r", "mem_len",
                "clamp_len", "same_length"):
        assert written[key] == original[key], key
    family, cfg, params = load_hf(tmp_path)
    assert family == "transfo_xl" and cfg == loaded.config
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---------------------------------------------------------------------------------------- memory


def test_segments_with_long_memory_equal_one_pass_over_the_concatenation(parity):
    """§3.3: with relative positions, reading 12 tokens as segments of 5, 4 and 3 with a memory of ≥ 12 positions is
    the same computation as one causal pass over all 12."""
    loaded = parity["plain"][0]
    cfg = loaded.config.with_memory(mem_len=16, clamp_len=-1, same_length=False)
    tokens = jnp.asarray(np.random.default_rng(3).integers(0, cfg.vocab_size, (2, 12)), jnp.int32)

    @jax.jit
    def run(p, tokens):
        model = models.build("transfo_xl", cfg)
        full = model.apply({"params": p}, tokens)
        memory, parts = None, []
        for a, b in ((0, 5), (5, 9), (9, 12)):
            out = model.apply({"params": p}, tokens[:, a:b], memory=memory)
            parts.append(out.log_probs_BTV)
            memory = out.memory
        # A memory shorter than the text forgets: the last segment then differs.
        short = models.build("transfo_xl", cfg.with_memory(mem_len=4))
        m4 = short.apply({"params": p}, tokens[:, :9]).memory
        last = short.apply({"params": p}, tokens[:, 9:], memory=m4).log_probs_BTV
        return full, jnp.concatenate(parts, axis=1), memory, m4, last

    full, segmented, memory, m4, last = jax.tree.map(np.asarray, run(loaded.params, tokens))
    np.testing.assert_allclose(segmented, full.log_probs_BTV, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(memory, full.memory, atol=1e-5, rtol=1e-5)
    assert memory.shape == (2, cfg.num_layers, 12, cfg.hidden_size) and m4.shape[2] == 4
    assert not np.allclose(last, full.log_probs_BTV[:, 9:], atol=1e-3)


def test_ordered_streams_continue_row_by_row():
    docs = [[np.arange(10, 20), np.arange(20, 25)], [np.arange(30, 41)]]
    rows = ordered_streams(docs, 4, 2, eos=1)
    stream = [*range(10, 20), 1, *range(20, 25), 1, *range(30, 41), 1]  # 29 tokens → 2 streams of 14
    assert rows.shape == (6, 5)  # 3 segments of 4 predictions per stream, stream-major
    for n in range(3):
        for r in range(2):
            assert rows[2 * n + r].tolist() == stream[r * 14 + 4 * n: r * 14 + 4 * n + 5]
    np.testing.assert_array_equal(rows[2:, 0], rows[:-2, -1])  # row r of batch n + 1 continues row r of batch n
    with pytest.raises(ValueError, match="cannot fill one segment"):
        ordered_streams(docs, 20, 2, eos=1)


# ---------------------------------------------------------------------------------------------- FLOPs


def test_flops_with_memory_equal_xla_dots():
    cfg = models.make_config("transfo_xl", vocab_size=300, cutoffs=[60, 150], tie_projs=[False, True, True],
                             div_val=2, hidden_size=32, embedding_size=24, num_layers=2, num_heads=2, head_dim=12,
                             intermediate_size=48, mem_len=10, scan_unroll=True)
    ocfg = objectives.config_for("segment_clm")
    objective = objectives.make_objective(ocfg, SpecialIds(eos=0, unk=1), cfg.vocab_size)
    model, batch = models.build("transfo_xl", cfg), objective.dummy_batch(2, 16)
    loss_fn = objective.make_loss(model)
    params = nn.meta.unbox(abstract_params(model, objective, batch))
    carry = objective.init_carry(2, cfg)
    forward = jax.jit(lambda p, b, c: loss_fn(p, b, jax.random.key(0), carry=c, deterministic=True)[0]).lower(
        params, batch, carry).compile()
    ours = flops.step_flops("transfo_xl", cfg, ocfg, 2, 16, train=False)
    # Every tail cluster at every position (the accountant without shares), except that the training path's
    # `lax.switch` holds one program per capacity, each scoring its rows of each of the 2 sequences (one runs).
    extra_rows = 2 * sum(capacities(16)) - 32
    per_row = sum(2 * (e_i * cfg.hidden_size * proj + e_i * v_i)
                  for v_i, e_i, _, proj in transfo_xl.vocab_clusters(cfg)[1:])
    assert flops.hlo_dot_flops(forward) == ours.matmul + extra_rows * per_row
    # The memory's 10 keys are in the attention terms: K/V projections, both score products and the context.
    (tower,) = flops.towers_for("transfo_xl", cfg, ocfg, 16)
    no_memory = flops.forward_flops([dataclasses.replace(tower, attention_memory=0, relative_positions=16)], 2)
    hk, d, t, m, layers = 24, 32, 16, 10, 2
    # Per sequence and layer: K/V over M more rows (2·2M·D·HK), content scores, position scores and context over M
    # more keys (3 · 2·T·M·HK); once per step and layer: the sinusoids' projection of M more rows (2·M·D·HK).
    batch = 2
    assert ours.matmul - no_memory.matmul == layers * (batch * (4 * m * d * hk + 6 * t * m * hk) + 2 * m * d * hk)
    assert flops.model_flops_per_token([tower]) > flops.model_flops_per_token(
        [dataclasses.replace(tower, attention_memory=0, relative_positions=16)])
    # Uniform targets: the tail clusters (90 and 150 of 300 words) scored at 90/300 and 150/300 of the positions.
    gated = flops.uniform_target_shares(tower)
    assert gated.cluster_shares == (1.0, 90 / 300, 150 / 300)
    saved = sum((1 - share) * batch * t * 2 * (e_i * d * proj + e_i * v_i) for share, (v_i, e_i, _, proj)
                in zip(gated.cluster_shares[1:], tower.vocab_clusters[1:]))
    assert ours.matmul - flops.forward_flops([gated], 2).matmul == pytest.approx(saved)
    with pytest.raises(ValueError, match="one fraction in"):
        dataclasses.replace(tower, cluster_shares=(1.0, 0.5))


# ----------------------------------------------------------------------------------------- recipe, CLI

SMALL = ["--config.data.max_documents=400", "--config.data.max_eval_documents=40", "--config.data.seq_len=32",
         "--config.data.vocab_size=1000", "--config.train.batch_size=8", "--config.train.progress=False",
         "--config.train.log_every=1", "--config.optim.warmup_steps=3", "--config.optim.learning_rate=3e-3",
         "--config.model.mem_len=32", "--config.train.steps=20", "--config.train.eval_every=20",
         "--config.train.checkpoint_every=10", "--config.train.eval_batches=2"]


def test_recipe_sizes():
    from llm_jax import config as config_lib

    def load(arg):
        return config_lib.from_dict(config_lib.load_config_file(f"{ROOT / 'configs' / 'transfo_xl.py'}:{arg}"))

    base, tiny = load("size=base"), load("size=tiny")
    assert base.model == transfo_xl.PRESETS["transfo-xl-wt103-base"] and base.objective.name == "segment_clm"
    assert (base.data.seq_len, base.model.mem_len, base.train.batch_size, base.optim.clip_norm) == (150, 150, 60, 0.25)
    assert (tiny.family, tiny.data.seq_len) == ("transfo_xl", 64)
    with pytest.raises(ValueError, match="choose one of"):
        load("size=huge")


@pytest.fixture(scope="module")
def txl_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("txl")
    assert cli.main(["pretrain", "--config", f"{ROOT / 'configs' / 'transfo_xl.py'}:size=tiny",
                     "--workdir", str(workdir), *SMALL]) == 0
    return workdir


def test_cli_pretraining_lowers_the_loss(txl_run):
    rows = [r for r in read_metrics(txl_run) if "loss" in r]
    assert rows[0]["step"] == 1 and rows[-1]["step"] == 20
    # Chance is ln(1000) ≈ 6.9 nats; 20 steps take a 2-layer model more than 1 nat below, on held-out text too.
    assert rows[0]["loss"] > 6.0 and rows[-1]["loss"] < rows[0]["loss"] - 1.0
    evals = [r for r in read_metrics(txl_run) if "eval_loss" in r]
    assert evals[-1]["eval_loss"] < rows[0]["loss"] - 1.0
    config = json.loads((txl_run / "config.json").read_text())
    assert config["model"]["eos_token_id"] == 0 and config["objective"]["name"] == "segment_clm"


def test_restart_after_a_kill_reproduces_the_run_bitwise(txl_run, tmp_path):
    """A run killed after its step-10 checkpoint restarts from it — params, optimizer state and the carried memory —
    and logs steps 11…20 exactly as the uninterrupted run did."""
    killed = tmp_path / "killed"
    shutil.copytree(txl_run, killed)
    shutil.rmtree(killed / "checkpoints" / "20")  # what a SIGKILL before the step-20 save leaves
    assert cli.main(["pretrain", "--config", f"{ROOT / 'configs' / 'transfo_xl.py'}:size=tiny",
                     "--workdir", str(killed), *SMALL]) == 0
    straight = {r["step"]: r["loss"] for r in read_metrics(txl_run) if "loss" in r}
    resumed = {r["step"]: r["loss"] for r in read_metrics(killed) if "loss" in r}  # the re-run row of a step wins
    assert [resumed[s] for s in range(11, 21)] == [straight[s] for s in range(11, 21)]
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["start_step"] == 10


def test_evaluation_with_memory(txl_run):
    from llm_jax.interop.native import load_pretrained

    family, cfg, params, tok = load_pretrained(txl_run)
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, 97)
    whole = recurrent.recurrent_perplexity(family, cfg, params, ids, seg_len=96, mem_len=0)
    segmented = recurrent.recurrent_perplexity(family, cfg, params, ids, seg_len=32, mem_len=96)
    # With a memory covering the text, reading it in segments is reading it whole (relative positions, §3.3).
    assert whole.predictions == segmented.predictions == 96
    assert segmented.nll == pytest.approx(whole.nll, rel=1e-5)
    # The vanilla sliding window with a 96-token window sees what the whole pass sees for every prediction.
    window = recurrent.sliding_window_perplexity(family, cfg, params, ids, seg_len=96, batch_size=32)
    assert window.nll == pytest.approx(whole.nll, rel=1e-5) and window.method == "sliding_window"
    with pytest.raises(ValueError, match="no full segment"):
        recurrent.recurrent_perplexity(family, cfg, params, ids[:10], seg_len=32, mem_len=0)


def test_evaluate_cli_reads_the_text_with_memory(txl_run, tmp_path, capsys):
    """`llm-jax evaluate --task perplexity` on a Transformer-XL run: segments of --window tokens with --mem-len
    positions of memory, equal to `recurrent_perplexity` on the same ids; --stride is refused (segments follow)."""
    from llm_jax.interop.native import load_pretrained

    family, cfg, params, tok = load_pretrained(txl_run)
    text = tmp_path / "text.txt"
    text.write_text(" ".join(["in the beginning god created the heaven and the earth ."] * 12), encoding="utf-8")
    ids = tok.encode(text.read_text(encoding="utf-8"), add_special_tokens=False).ids
    results = {}
    for mem in (0, 32):
        assert cli.main(["evaluate", "--model", str(txl_run), "--task", "perplexity", "--data", str(text),
                         "--window", "16", "--mem-len", str(mem), "--json"]) == 0
        results[mem] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        direct = recurrent.recurrent_perplexity(family, cfg, params, ids, seg_len=16, mem_len=mem)
        assert results[mem]["tokens"] == direct.predictions == (len(ids) - 1) // 16 * 16
        assert results[mem]["nll_per_token"] == pytest.approx(direct.nll, rel=1e-6)
        assert results[mem]["mem_len"] == mem and results[mem]["window"] == 16
    # The memory is read (20 training steps do not teach the model to exploit it, so no direction is asserted).
    assert results[32]["nll_per_token"] != results[0]["nll_per_token"]
    # The CLI turns the error into one line on stderr and a non-zero exit.
    assert cli.main(["evaluate", "--model", str(txl_run), "--task", "perplexity", "--data", str(text),
                     "--window", "16", "--stride", "8"]) != 0
    assert "--stride 8: a segment-recurrent model" in capsys.readouterr().err

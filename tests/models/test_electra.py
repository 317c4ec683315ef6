"""ELECTRA: parameter counts equal Hugging Face's, HF parity both ways for the two checkpoints of the one joint
model, the replaced-token-detection objective, and a CLI pretraining run exported to transformers."""

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from llm_jax import cli, models, objectives
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.interop import load_hf_with_report, save_hf, state_dict
from llm_jax.models import electra
from llm_jax.objectives.rtd import corrupt, gumbel_max_sample
from llm_jax.train.step import abstract_params, count_params

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL_TOL = dict(rtol=1e-4, atol=1e-4)
# Odd shapes: E ≠ D for the discriminator, E = D for the generator (no projection there), different depths.
VOCAB, EMB, WIDTH, LAYERS, HEADS, FFN, T = 103, 24, 40, 3, 4, 72, 12
GEN_WIDTH, GEN_LAYERS, GEN_HEADS, GEN_FFN = 24, 2, 2, 48
LENGTHS = (12, 9, 4)
SEGMENT_STARTS = (6, 4, 2)
SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)


def _count(cfg) -> int:
    objective = objectives.shape_only_objective(electra.DEFAULT_OBJECTIVE, cfg.vocab_size)
    return count_params(abstract_params(models.build("electra", cfg), objective, objective.dummy_batch(1, 8)))


# ---------------------------------------------------------------------------------------- counts, contract


def _hf_counts(torch, transformers, cfg) -> tuple[int, int]:
    def build(cls, hf):
        hf = dict(hf)
        with torch.device("meta"):
            return sum(p.numel() for p in cls(transformers.AutoConfig.for_model(hf.pop("model_type"), **hf)).parameters())

    return (build(transformers.ElectraForPreTraining, electra.discriminator_config_to_hf(cfg)),
            build(transformers.ElectraForMaskedLM, electra.generator_config_to_hf(cfg)))


@pytest.mark.parametrize("preset", sorted(electra.PRESETS))
def test_parameter_count_equals_hugging_face(preset, require):
    torch = require("torch")
    transformers = require("transformers")
    cfg = electra.PRESETS[preset]
    disc, gen = _hf_counts(torch, transformers, cfg)
    e = cfg.embedding_size
    shared = (cfg.vocab_size + cfg.max_position_embeddings + cfg.type_vocab_size) * e + 2 * e
    assert _count(cfg) == disc + gen - shared


def test_published_sizes(require):
    torch = require("torch")
    transformers = require("transformers")
    # reference/figures.md §1.3: each HF checkpoint's count, and the joint count (the shared embeddings once).
    hf = {p: _hf_counts(torch, transformers, electra.PRESETS[p]) for p in
          ("electra-small", "electra-small-paper", "electra-base", "electra-large")}
    assert hf == {"electra-small": (13_549_057, 13_546_682), "electra-small-paper": (13_549_057, 4_620_026),
                  "electra-base": (109_483_009, 33_740_602), "electra-large": (335_142_913, 51_295_290)}
    joint = {p: _count(electra.PRESETS[p]) for p in hf}
    assert joint == {"electra-small": 23_122_875, "electra-small-paper": 14_196_219, "electra-base": 119_386_427,
                     "electra-large": 354_655_291}


def test_family_contract_configs_and_towers():
    assert models.check_family(electra) == []
    cfg = electra.PRESETS["electra-base"]
    gen = cfg.generator_config()
    assert (gen.hidden_size, gen.num_heads, gen.intermediate_size, gen.num_layers) == (256, 4, 1024, 12)
    assert electra.PRESETS["electra-small-paper"].generator_hidden_size == 64
    assert electra.PRESETS["electra-large"].generator_hidden_size == 256
    both = {"discriminator": electra.discriminator_config_to_hf(cfg), "generator": electra.generator_config_to_hf(cfg)}
    assert electra.config_from_hf_views(both) == cfg
    with pytest.raises(ValueError, match="disagree on what they share") as e:
        electra.config_from_hf_views({**both, "generator": {**both["generator"], "embedding_size": 64}})
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="generator_num_heads"):
        dataclasses.replace(cfg, generator_num_heads=5).validate()
    gen_tower, disc_tower = electra.towers(cfg, 512, predicted_positions=80, heads=("mlm", "rtd"))
    assert (gen_tower.d_model, gen_tower.lm_positions, gen_tower.token_classes) == (256, 80, 0)
    assert (disc_tower.d_model, disc_tower.lm_positions, disc_tower.token_classes, disc_tower.e) == (768, 0, 1, 768)


def test_flops_in_both_conventions_from_the_presets():
    """The paper's totals (google-research/electra flops_computation.py) from our presets' own towers."""
    from llm_jax import flops

    def script_total(preset, batch, steps, seq):
        cfg = electra.PRESETS[preset]
        obj = objectives.config_for("rtd")
        return flops.electra_script_train_flops(flops.towers_for("electra", cfg, obj, seq), batch, steps).total

    np.testing.assert_allclose(script_total("electra-small-paper", 128, 1_000_000, 128), 1.294e18, rtol=0.01)
    np.testing.assert_allclose(script_total("electra-base", 256, 766_000, 512), 6.425e19, rtol=0.01)


def test_layer_decay_puts_the_projection_with_the_embeddings():
    """ELECTRA's fine-tuning LLRD (`_get_layer_lrs`): embeddings and `embeddings_project` at depth 0, layer l at
    l + 1, the head on top."""
    from llm_jax.models import heads
    from llm_jax.train.optim import layer_depth_factors

    cfg = electra.PRESETS["electra-tiny"]
    model = heads.build("electra", cfg, "classification", num_labels=3)
    boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32)))["params"]
    factors = traverse_util.flatten_dict(layer_depth_factors(boxed, 0.8), sep="/")
    depth0 = 0.8 ** (cfg.num_layers + 1)
    assert factors["electra/encoder/embeddings_project/kernel"] == pytest.approx(depth0)
    assert factors["electra/embeddings/word_embeddings/embedding"] == pytest.approx(depth0)
    assert factors["classifier/out_proj/kernel"] == 1.0


# ------------------------------------------------------------------------------------------- HF parity


def _hf_configs(transformers):
    common = dict(vocab_size=VOCAB, embedding_size=EMB, max_position_embeddings=T + 4, hidden_act="gelu",
                  attn_implementation="eager")
    disc = transformers.ElectraConfig(hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                      intermediate_size=FFN, **common)
    gen = transformers.ElectraConfig(hidden_size=GEN_WIDTH, num_hidden_layers=GEN_LAYERS,
                                     num_attention_heads=GEN_HEADS, intermediate_size=GEN_FFN, **common)
    return disc, gen


def _randomize(torch, model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every weight random, LayerNorm scales near 1: no constant hides a swapped tensor
        for name, p in model.named_parameters():
            noise = 0.1 * torch.randn(p.shape, generator=g)
            p.copy_(1 + noise if name.endswith("LayerNorm.weight") else noise)
    return model.eval()


def _inputs(pad_id):
    rng = np.random.default_rng(0)
    mask = np.arange(T)[None, :] < np.array(LENGTHS)[:, None]
    tokens = np.where(mask, rng.integers(5, VOCAB, (len(LENGTHS), T)), pad_id)
    segments = (np.arange(T)[None, :] >= np.array(SEGMENT_STARTS)[:, None]) & mask
    return tokens.astype(np.int64), segments.astype(np.int64), mask


def _ours(config, params, tokens, segments, mask):
    model = models.build("electra", config)
    out = jax.jit(lambda p, x, s, m: model.apply({"params": p}, x, segment_ids_BT=s, mask_BT=m))(
        params, jnp.asarray(tokens, jnp.int32), jnp.asarray(segments, jnp.int32), jnp.asarray(mask))
    return jax.tree.map(np.asarray, out)


def _theirs(torch, disc, gen, tokens, segments, mask):
    kw = dict(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)),
              token_type_ids=torch.tensor(segments), output_hidden_states=True)
    with torch.no_grad():
        d, g = disc(**kw), gen(**kw)
    return d.hidden_states[-1].numpy(), d.logits.numpy(), g.hidden_states[-1].numpy(), g.logits.numpy()


def _check(ours, theirs):
    hidden, rtd, gen_hidden, mlm = theirs
    np.testing.assert_allclose(ours.hidden_BTD, hidden, **MODEL_TOL)
    np.testing.assert_allclose(ours.rtd_logits_BT, rtd, **MODEL_TOL)
    np.testing.assert_allclose(ours.generator_hidden_BTD, gen_hidden, **MODEL_TOL)
    np.testing.assert_allclose(ours.mlm_logits_BTV, mlm, **MODEL_TOL)


@pytest.fixture(scope="module")
def hf_pair(require, tmp_path_factory):
    """A random HF discriminator and generator sharing their embeddings, saved side by side as `save_hf` lays
    them out (`DIR/discriminator`, `DIR/generator`)."""
    torch = require("torch")
    transformers = require("transformers")
    disc_cfg, gen_cfg = _hf_configs(transformers)
    disc = _randomize(torch, transformers.ElectraForPreTraining(disc_cfg), 1)
    gen = _randomize(torch, transformers.ElectraForMaskedLM(gen_cfg), 2)
    gen.electra.embeddings.load_state_dict(disc.electra.embeddings.state_dict())  # shared, as trained jointly
    root = tmp_path_factory.mktemp("electra-hf")
    disc.save_pretrained(root / "discriminator")
    gen.save_pretrained(root / "generator")
    return torch, disc, gen, root


def test_from_transformers_matches(hf_pair):
    torch, disc, gen, root = hf_pair
    loaded = load_hf_with_report(root)
    assert loaded.family == "electra" and loaded.report.initialized == () and loaded.report.unexpected == ()
    cfg = loaded.config
    assert (cfg.embedding_size, cfg.hidden_size, cfg.generator_hidden_size, cfg.generator_num_layers) == \
        (EMB, WIDTH, GEN_WIDTH, GEN_LAYERS)
    assert "embeddings_project" in loaded.params["electra"]["encoder"]
    assert "embeddings_project" not in loaded.params["generator"]  # E = generator width: HF has no projection
    tokens, segments, mask = _inputs(cfg.pad_token_id)
    _check(_ours(cfg, loaded.params, tokens, segments, mask), _theirs(torch, disc, gen, tokens, segments, mask))


def test_discriminator_alone_loads_for_fine_tuning(hf_pair):
    torch, disc, _, root = hf_pair
    loaded = load_hf_with_report(root / "discriminator")
    assert loaded.report.unexpected == ()
    assert loaded.report.initialized and all(p.startswith(("generator/", "mlm_head/"))
                                             for p in loaded.report.initialized)
    tokens, segments, mask = _inputs(loaded.config.pad_token_id)
    ours = _ours(loaded.config, loaded.params, tokens, segments, mask)
    hidden, rtd, _, _ = _theirs(torch, disc, disc, tokens, segments, mask)
    np.testing.assert_allclose(ours.hidden_BTD, hidden, **MODEL_TOL)
    np.testing.assert_allclose(ours.rtd_logits_BT, rtd, **MODEL_TOL)


def test_mismatched_shared_embeddings_are_refused(hf_pair, tmp_path):
    torch, disc, gen, _ = hf_pair
    other = type(gen)(gen.config)
    other.load_state_dict(gen.state_dict())
    with torch.no_grad():
        other.electra.embeddings.word_embeddings.weight.add_(0.5)
    disc.save_pretrained(tmp_path / "discriminator")
    other.save_pretrained(tmp_path / "generator")
    with pytest.raises(ValueError, match="different values") as e:
        load_hf_with_report(tmp_path)
    assert "\n" not in str(e.value)


def test_ours_to_transformers_loads_cleanly_and_matches(require, tmp_path):
    torch = require("torch")
    transformers = require("transformers")
    config = models.make_config("electra", vocab_size=VOCAB, embedding_size=EMB, hidden_size=WIDTH, num_layers=LAYERS,
                                num_heads=HEADS, intermediate_size=FFN, max_position_embeddings=T + 4,
                                generator_hidden_size=GEN_WIDTH, generator_num_layers=GEN_LAYERS,
                                generator_num_heads=GEN_HEADS, generator_intermediate_size=GEN_FFN)
    rng = np.random.default_rng(4)
    flat = {path: (1 if path.endswith("norm/scale") else 0) + 0.1 * rng.standard_normal(shape).astype(np.float32)
            for path, shape in state_dict.param_shapes("electra", config).items()}
    params = traverse_util.unflatten_dict(flat, sep="/")
    save_hf("electra", config, params, tmp_path)
    disc, info_d = transformers.ElectraForPreTraining.from_pretrained(tmp_path / "discriminator",
                                                                      output_loading_info=True,
                                                                      attn_implementation="eager")
    gen, info_g = transformers.ElectraForMaskedLM.from_pretrained(tmp_path / "generator", output_loading_info=True,
                                                                  attn_implementation="eager")
    assert {k: v for k, v in info_d.items() if v} == {} and {k: v for k, v in info_g.items() if v} == {}
    assert gen.get_output_embeddings().weight.data_ptr() == gen.get_input_embeddings().weight.data_ptr()
    tokens, segments, mask = _inputs(config.pad_token_id)
    _check(_ours(config, params, tokens, segments, mask),
           _theirs(torch, disc.eval(), gen.eval(), tokens, segments, mask))


# -------------------------------------------------------------------------------------------- the objective


def test_corruption_labels_only_changed_tokens():
    inputs = jnp.asarray([[2, 4, 11, 4, 3, 0], [2, 12, 4, 3, 0, 0]], jnp.int32)  # 4 = [MASK]
    positions = jnp.asarray([[1, 3, 0], [2, 0, 0]], jnp.int32)
    ids = jnp.asarray([[10, 13, 0], [14, 0, 0]], jnp.int32)
    weights = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    sampled = jnp.asarray([[10, 20, 7], [30, 9, 9]], jnp.int32)  # a correct sample, a wrong one; padding slots
    corrupted, replaced = corrupt(inputs, positions, ids, weights, sampled)
    np.testing.assert_array_equal(corrupted, [[2, 10, 11, 20, 3, 0], [2, 12, 30, 3, 0, 0]])
    np.testing.assert_array_equal(replaced, [[0, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0]])


def test_gumbel_max_samples_follow_the_softmax():
    logits = jnp.log(jnp.asarray([[0.6, 0.3, 0.1]]))
    draws = jax.vmap(lambda k: gumbel_max_sample(logits, k))(jax.random.split(jax.random.key(0), 20_000))
    np.testing.assert_allclose(np.bincount(np.asarray(draws).ravel(), minlength=3) / 20_000, [0.6, 0.3, 0.1],
                               atol=0.015)
    grad = jax.grad(lambda x: gumbel_max_sample(x, jax.random.key(1)).astype(jnp.float32).sum())(logits)
    assert not np.any(np.asarray(grad))


def test_masking_is_electras_85_15_rule():
    objective = objectives.make_objective(objectives.config_for("rtd"), SPECIAL, 500)
    rng = np.random.default_rng(0)
    rows = np.r_[[np.r_[2, rng.integers(10, 500, 126), 3] for _ in range(64)]].astype(np.int32)
    batch = objective.prepare({"tokens": rows, "mask": np.ones_like(rows, bool), "epoch": np.zeros(64, int),
                               "example_index": np.arange(64)}, seed=0)
    real = batch["mlm_weights"] > 0
    shown = np.take_along_axis(batch["inputs"], batch["mlm_positions"], 1)[real]
    assert abs(np.mean(shown == SPECIAL.mask) - 0.85) < 0.03
    assert np.all((shown == SPECIAL.mask) | (shown == batch["mlm_ids"][real]))  # never a random token
    with pytest.raises(ValueError, match="must be 'dynamic'"):
        objectives.config_for("rtd", masking="static")


def test_rtd_loss_terms_and_metrics():
    cfg = dataclasses.replace(electra.PRESETS["electra-tiny"], vocab_size=64)
    objective = objectives.make_objective(objectives.config_for("rtd", max_predictions=4), SPECIAL, 64)
    model = models.build("electra", cfg)
    rng = np.random.default_rng(1)
    rows = np.r_[[np.r_[2, rng.integers(10, 64, 14), 3] for _ in range(4)]].astype(np.int32)
    batch = objective.prepare({"tokens": rows, "mask": np.ones_like(rows, bool), "epoch": np.zeros(4, int),
                               "example_index": np.arange(4)}, seed=0)
    args, kwargs = objective.init_inputs(batch)
    params = model.init(jax.random.key(0), *args, **kwargs)["params"]
    loss_fn = objective.make_loss(model)
    loss, (m, _) = jax.jit(lambda p, b, k: loss_fn(p, b, k, deterministic=True))(params, batch, jax.random.key(3))
    np.testing.assert_allclose(loss, m["mlm_loss"] + 50 * m["disc_loss"], rtol=1e-6)
    # Untrained, the generator samples wrong tokens almost always; every replaced token is a masked one.
    assert 0.5 < m["replaced_fraction"] <= 1.0
    np.testing.assert_allclose(m["replaced_rate"], m["replaced_fraction"] * batch["mlm_weights"].sum() / rows.size,
                               rtol=1e-5)
    derived = objective.derived_metrics({k: float(v) for k, v in m.items()})
    assert set(derived) == {"disc_precision", "disc_recall"} and all(0 <= v <= 1 for v in derived.values())


# ------------------------------------------------------------------------------------ CLI pretrain + export


def _patterned_corpus(path: pathlib.Path) -> pathlib.Path:
    """Documents of templated sentences whose subject fixes its verb and object: context a tiny model learns in a
    few dozen steps, so that replaced tokens become detectable (on the bundled corpus that takes thousands of
    steps; the closing notes give that run)."""
    rng = np.random.default_rng(0)
    subjects = ["the cat", "a dog", "my sister", "the old farmer", "our teacher", "a small bird"]
    verbs = ["eats", "watches", "paints", "carries", "finds", "builds"]
    things = ["a red apple", "the blue boat", "three wooden chairs", "an empty box", "the green door", "a tall tree"]
    places = ["in the garden", "near the river", "at the market", "under the bridge", "on the hill", "by the station"]
    docs = []
    for _ in range(400):
        who = rng.integers(6, size=6)
        docs.append("\n".join(f"{subjects[i]} {verbs[i]} {things[i]} {places[rng.integers(6)]} every morning ."
                              for i in who))
    path.write_text("\n\n".join(docs) + "\n")
    return path


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("electra")
    run = root / "run"
    rc = cli.main(["pretrain", "--config", str(ROOT / "configs" / "electra.py:size=tiny"), "--workdir", str(run),
                   f"--config.data.corpus={_patterned_corpus(root / 'corpus.txt')}", "--config.data.vocab_size=200",
                   "--config.data.max_eval_documents=20", "--config.train.steps=60", "--config.train.batch_size=16",
                   "--config.data.seq_len=64", "--config.train.progress=False", "--config.train.eval_every=60",
                   "--config.train.eval_batches=2", "--config.train.log_every=1",
                   "--config.train.checkpoint_every=60", "--config.optim.warmup_steps=5",
                   "--config.optim.learning_rate=3e-3"])
    assert rc == 0
    return run


def test_cli_pretraining_lowers_both_losses_and_beats_nothing_replaced(cli_run):
    rows = [json.loads(line) for line in (cli_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "loss" in r]
    keys = {"mlm_loss", "disc_loss", "mlm_accuracy", "disc_accuracy", "disc_precision", "disc_recall",
            "replaced_fraction"}
    assert all(keys <= set(r) for r in train)
    for key in ("mlm_loss", "disc_loss"):
        first, last = np.mean([r[key] for r in train[:5]]), np.mean([r[key] for r in train[-5:]])
        assert last < first, (key, first, last)
    (ev,) = [r for r in rows if "eval_disc_accuracy" in r]
    # Held-out text: the discriminator beats always answering "original" (accuracy 1 − replaced share).
    assert ev["eval_disc_accuracy"] > 1 - ev["eval_replaced_rate"], ev


def test_convert_to_hf_writes_both_checkpoints(cli_run, tmp_path, require):
    torch = require("torch")
    transformers = require("transformers")
    assert cli.main(["convert", "--to-hf", str(cli_run), "--out", str(tmp_path / "hf")]) == 0
    disc, info = transformers.ElectraForPreTraining.from_pretrained(tmp_path / "hf" / "discriminator",
                                                                    output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}, info
    gen = transformers.ElectraForMaskedLM.from_pretrained(tmp_path / "hf" / "generator")
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf" / "discriminator")
    enc = tok("The first sentence.", return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(disc.eval()(**enc).logits).all() and torch.isfinite(gen.eval()(**enc).logits).all()
    # And back: the two directories read as one joint model.
    assert cli.main(["convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "ours")]) == 0


def test_describe_prints_the_joint_count_and_each_part(capsys):
    assert cli.main(["describe", "electra-base"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 119386427" in out
    assert "discriminator: 109483009 (ElectraForPreTraining)" in out and "generator: 33740602 (ElectraForMaskedLM)" in out


def test_finetune_from_the_electra_run(cli_run, tmp_path):
    """`llm-jax finetune` keeps the discriminator (`electra/`) and trains ELECTRA's classification head."""
    assert cli.main(["finetune", "--config", f"{ROOT / 'configs' / 'finetune.py'}:model={cli_run},task=wordnet-wic",
                     "--workdir", str(tmp_path), "--config.train.progress=False", "--config.data.seq_len=48",
                     "--config.data.train_examples=64", "--config.train.steps=4", "--config.train.eval_every=4",
                     "--config.train.eval_examples=32"]) == 0
    assert json.loads((tmp_path / "results.json").read_text())
    # ELECTRA's own fine-tuning recipe (Table 7): layer-wise LR decay 0.8 below 24 layers.
    assert json.loads((tmp_path / "config.json").read_text())["optim"]["layer_decay"] == 0.8


@pytest.mark.parametrize("cls_name,kind", [("ElectraForSequenceClassification", "classification"),
                                           ("ElectraForMultipleChoice", "multiple_choice")])
def test_task_heads_match_transformers(require, cls_name, kind):
    """ELECTRA's own heads on the discriminator: `ElectraClassificationHead` (dense + GELU on the first token) and
    `ElectraSequenceSummary` + one logit per choice, with HF's names so that fine-tuned checkpoints map."""
    from llm_jax.interop import state_dict
    from llm_jax.models import heads

    torch = require("torch")
    transformers = require("transformers")
    disc_cfg, _ = _hf_configs(transformers)
    disc_cfg.num_labels = 3
    hf = _randomize(torch, getattr(transformers, cls_name)(disc_cfg), 5)
    tensors = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    cfg = electra.discriminator_config_from_hf(hf.config.to_dict())
    trunk, report = state_dict.from_hf_state_dict("electra", cfg, tensors, view="discriminator")
    linear = lambda name: {"kernel": tensors[f"{name}.weight"].T, "bias": tensors[f"{name}.bias"]}
    params = {"electra": trunk["electra"]}
    if kind == "classification":
        params["classifier"] = {"dense": linear("classifier.dense"), "out_proj": linear("classifier.out_proj")}
        assert sorted(report.unexpected) == sorted(f"classifier.{n}.{w}" for n in ("dense", "out_proj")
                                                   for w in ("weight", "bias"))
    else:
        params["sequence_summary"] = {"summary": linear("sequence_summary.summary")}
        params["classifier"] = linear("classifier")
    model = heads.build("electra", cfg, kind, num_labels=3)
    tokens, segments, mask = _inputs(cfg.pad_token_id)
    if kind == "multiple_choice":  # 3 examples × 2 choices
        tokens, segments, mask = (np.stack([x, x[::-1]], 1) for x in (tokens, segments, mask))
    out = model.apply({"params": params}, jnp.asarray(tokens, jnp.int32), mask_BT=jnp.asarray(mask),
                      segment_ids_BT=jnp.asarray(segments, jnp.int32))
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)),
                    token_type_ids=torch.tensor(segments)).logits.numpy()
    np.testing.assert_allclose(out.logits_BC if kind == "classification" else out.logits_BN, theirs, **MODEL_TOL)

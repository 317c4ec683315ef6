"""DistilBERT: parameter counts equal Hugging Face's, HF parity both ways, the student's start from a BERT teacher,
the distillation loss, and the CLI (teacher run → distillation → fine-tuning)."""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from llm_jax import cli, models, objectives
from llm_jax import config as config_lib
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.interop import load_hf_with_report, save_hf, state_dict
from llm_jax.models import bert, distilbert, heads
from llm_jax.train.metrics import read_metrics
from llm_jax.train.step import abstract_params, count_params

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL_TOL = dict(rtol=1e-4, atol=1e-4)
VOCAB, WIDTH, LAYERS, HEADS, FFN, T = 101, 64, 2, 4, 128, 12
LENGTHS = (12, 8, 5)  # one full row, two padded ones


# ------------------------------------------------------------------------------------- counts, contract


def _count(cfg) -> int:
    objective = objectives.shape_only_objective(distilbert.DEFAULT_OBJECTIVE, cfg.vocab_size)
    return count_params(abstract_params(models.build("distilbert", cfg), objective, objective.dummy_batch(1, 8)))


@pytest.mark.parametrize("preset", sorted(distilbert.PRESETS))
def test_parameter_count_equals_hugging_face(preset, require):
    torch, transformers = require("torch"), require("transformers")
    _, cfg = models.get_preset(preset)
    hf_cfg = distilbert.config_to_hf(cfg)
    config = transformers.AutoConfig.for_model(hf_cfg.pop("model_type"), **hf_cfg)
    with torch.device("meta"):  # the module tree without allocating weights
        hf = transformers.DistilBertForMaskedLM(config)
    assert _count(cfg) == sum(p.numel() for p in hf.parameters())  # tied weights counted once


def test_published_size():
    # DistilBertForMaskedLM(distilbert-base-uncased): 66,985,530 (reference/figures.md §1.1).
    assert _count(models.get_preset("distilbert-base")[1]) == 66_985_530


def test_family_contract_and_registry():
    assert models.check_family(distilbert) == []
    assert models.family_module("distilbert") is distilbert
    assert "distill" in objectives.OBJECTIVES
    cfg = models.get_preset("distilbert-base")[1]
    assert (cfg.num_layers, cfg.width, cfg.num_token_types, cfg.max_seq_len) == (6, 768, 1, 512)


def test_flops_towers_match_xla_dots():
    """The analytic matmul count of the student's forward (MLM head at P positions, no pooler, no token types)
    equals XLA's dots; the teacher's forward is not the student's cost and is left out."""
    import flax.linen as nn

    from llm_jax import flops

    cfg = models.make_config("distilbert", hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512,
                             vocab_size=1000, max_position_embeddings=64, scan_unroll=True)
    ocfg = objectives.config_for("mlm", max_predictions=10)
    objective = objectives.make_objective(ocfg, SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4), cfg.vocab_size)
    model, batch = models.build("distilbert", cfg), objective.dummy_batch(2, 64)
    loss_fn = objective.make_loss(model)
    params = nn.meta.unbox(abstract_params(model, objective, batch))
    forward = jax.jit(lambda p, b: loss_fn(p, b, jax.random.key(0), deterministic=True)[0]).lower(
        params, batch).compile()
    ours = flops.step_flops("distilbert", cfg, ocfg, 2, 64, train=False)
    assert not any(k.startswith("matmul/pooler") for k in ours.terms)
    assert flops.hlo_dot_flops(forward) == ours.matmul


def test_distill_step_flops_are_student_training_plus_teacher_forward_and_match_xla_dots():
    """A distill train step = the student's training FLOPs (×3) + the frozen BERT teacher's forward (×1, no
    dropout, no optimizer); XLA's dots of the compiled step (teacher a frozen jit argument) equal the matmuls."""
    import flax.linen as nn

    from llm_jax import flops, sharding
    from llm_jax.train import step as step_lib
    from llm_jax.train.optim import OptimConfig, make_optimizer

    shape = {"hidden_size": 128, "num_heads": 2, "intermediate_size": 512, "vocab_size": 1000,
             "max_position_embeddings": 64, "scan_unroll": True}
    cfg = models.make_config("distilbert", num_layers=1, **shape)
    t_cfg = models.make_config("bert", num_layers=2, **shape)
    ocfg = objectives.config_for("distill", max_predictions=10)
    frozen_configs = {"teacher": ("bert", t_cfg)}
    objective = objectives.make_objective(ocfg, SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4), cfg.vocab_size)
    model, teacher, batch = models.build("distilbert", cfg), models.build("bert", t_cfg), objective.dummy_batch(2, 64)
    n_params = count_params(abstract_params(model, objective, batch))

    ours = flops.step_flops("distilbert", cfg, ocfg, 2, 64, num_params=n_params, frozen_configs=frozen_configs)
    student = flops.step_flops("distilbert", cfg, objectives.config_for("mlm", max_predictions=10), 2, 64,
                               num_params=n_params)
    teacher_fwd = flops.step_flops("bert", t_cfg, objectives.config_for("mlm", max_predictions=10), 2, 64,
                                   train=False)
    assert ours.total == student.total + teacher_fwd.total
    assert ours.matmul == student.matmul + teacher_fwd.matmul
    s_tower, t_tower = flops.towers_for("distilbert", cfg, ocfg, 64, frozen_configs=frozen_configs)
    assert s_tower.trainable and not t_tower.trainable and t_tower.num_layers == 2 and not t_tower.pooler_classes
    assert flops.model_flops_per_token([s_tower, t_tower]) == pytest.approx(
        flops.model_flops_per_token([s_tower])
        + flops.model_flops_per_token([dataclasses.replace(t_tower, trainable=True)]) / 3)
    with pytest.raises(ValueError, match="frozen_configs"):
        flops.towers_for("distilbert", cfg, ocfg, 64)  # the teacher's shape is not the student's

    tx, schedule = make_optimizer(OptimConfig(), 10)
    mesh = sharding.make_mesh(sharding.MeshConfig(data=1), jax.devices()[:1])
    rules = sharding.rules_for("dp")
    frozen_sh = {"teacher": step_lib.frozen_shardings(abstract_params(teacher, objective, batch), mesh, rules)}
    frozen = {"teacher": nn.meta.unbox(abstract_params(teacher, objective, batch))}
    state, shardings = step_lib.create_state(model, objective, tx, batch, mesh, rules, seed=0)
    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(objective.make_loss(model, frozen_models={"teacher": teacher}), tx, schedule,
                                 seed=0, denominators_fn=objective.loss_denominators),
        shardings, mesh, batch, frozen_sh)
    with step_lib.mesh_context(mesh, rules):
        compiled = train_step.lower(state, batch, frozen).compile()
    assert flops.hlo_dot_flops(compiled) == ours.matmul
    # Counting the teacher as trained (×3) would be off by twice its forward: the test can fail.
    assert ours.matmul + 2 * teacher_fwd.matmul != flops.hlo_dot_flops(compiled)


# -------------------------------------------------------------------------------------- HF parity


def _randomize(torch, module, seed):
    """Every parameter ~ N(0, 0.1²), LayerNorm scales ~ N(1, 0.1²): no constant can hide a mis-mapped tensor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = 0.1 * torch.randn(p.shape, generator=g)
            p.copy_(1 + noise if name.lower().endswith(("layernorm.weight", "layer_norm.weight")) else noise)
    return module


def _inputs(pad_id=0):
    rng = np.random.default_rng(0)
    mask = np.arange(T)[None, :] < np.array(LENGTHS)[:, None]
    tokens = np.where(mask, rng.integers(3, VOCAB, (len(LENGTHS), T)), pad_id)
    return tokens.astype(np.int64), mask


def _hf_config(transformers, **overrides):
    return transformers.DistilBertConfig(vocab_size=VOCAB, dim=WIDTH, n_layers=LAYERS, n_heads=HEADS, hidden_dim=FFN,
                                         max_position_embeddings=T + 4, attn_implementation="eager", **overrides)


def _ours(config, params, tokens, mask):
    model = models.build("distilbert", config)
    out = jax.jit(lambda p, x, m: model.apply({"params": p}, x, mask_BT=m))(
        params, jnp.asarray(tokens, jnp.int32), jnp.asarray(mask))
    return jax.tree.map(np.asarray, out)


def _theirs(torch, hf_model, tokens, mask):
    with torch.no_grad():
        out = hf_model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)),
                       output_hidden_states=True)
    return out.hidden_states[-1].numpy(), out.logits.numpy()


@pytest.fixture(scope="module")
def hf_distilbert(require, tmp_path_factory):
    torch, transformers = require("torch"), require("transformers")
    torch.manual_seed(0)
    # activation="gelu_new" (tanh GELU): HF's FFN and MLM head both follow `activation`, so ours must too.
    model = _randomize(torch, transformers.DistilBertForMaskedLM(_hf_config(transformers, activation="gelu_new")),
                       seed=1).eval()
    path = tmp_path_factory.mktemp("hf_distilbert")
    model.save_pretrained(path)
    return model, path


def test_from_transformers_matches(require, hf_distilbert):
    torch = require("torch")
    hf_model, path = hf_distilbert
    loaded = load_hf_with_report(path)
    assert loaded.family == "distilbert" and loaded.config.hidden_act == "gelu_new"
    assert loaded.report.initialized == () and loaded.report.unexpected == ()
    tokens, mask = _inputs()
    ours = _ours(loaded.config, loaded.params, tokens, mask)
    hidden, logits = _theirs(torch, hf_model, tokens, mask)
    np.testing.assert_allclose(ours.hidden_BTD, hidden, **MODEL_TOL)
    np.testing.assert_allclose(ours.mlm_logits_BTV, logits, **MODEL_TOL)


def _random_params(config, seed):
    rng = np.random.default_rng(seed)
    flat = {}
    for path, shape in state_dict.param_shapes("distilbert", config).items():
        noise = 0.1 * rng.standard_normal(shape).astype(np.float32)
        flat[path] = 1 + noise if path.endswith("norm/scale") else noise
    return traverse_util.unflatten_dict(flat, sep="/")


def test_ours_to_transformers_loads_cleanly_and_matches(require, tmp_path):
    torch, transformers = require("torch"), require("transformers")
    config = models.make_config("distilbert", vocab_size=VOCAB, hidden_size=WIDTH, num_layers=LAYERS,
                                num_heads=HEADS, intermediate_size=FFN, max_position_embeddings=T + 4)
    params = _random_params(config, seed=4)
    save_hf("distilbert", config, params, tmp_path)
    hf_model, info = transformers.DistilBertForMaskedLM.from_pretrained(tmp_path, output_loading_info=True,
                                                                        attn_implementation="eager")
    assert {k: v for k, v in info.items() if v} == {}, info  # no missing / unexpected / mismatched keys
    hf_model.eval()
    assert hf_model.get_output_embeddings().weight.data_ptr() == hf_model.get_input_embeddings().weight.data_ptr()
    tokens, mask = _inputs(config.pad_token_id)
    ours = _ours(config, params, tokens, mask)
    hidden, logits = _theirs(torch, hf_model, tokens, mask)
    np.testing.assert_allclose(ours.hidden_BTD, hidden, **MODEL_TOL)
    np.testing.assert_allclose(ours.mlm_logits_BTV, logits, **MODEL_TOL)


def test_sequence_head_matches_distilbert_for_sequence_classification(require):
    torch, transformers = require("torch"), require("transformers")
    torch.manual_seed(0)
    hf = _randomize(torch, transformers.DistilBertForSequenceClassification(_hf_config(transformers, num_labels=3)),
                    seed=2).eval()
    tensors = {k: v.numpy() for k, v in hf.state_dict().items()}
    config = models.make_config("distilbert", vocab_size=VOCAB, hidden_size=WIDTH, num_layers=LAYERS,
                                num_heads=HEADS, intermediate_size=FFN, max_position_embeddings=T + 4)
    # The trunk through the family's name map (the MLM head, absent here, is initialised and unused).
    trunk, report = state_dict.from_hf_state_dict(
        "distilbert", config, {k: v for k, v in tensors.items() if k.startswith("distilbert.")})
    assert all(p.startswith("mlm_head/") for p in report.initialized)
    params = {"distilbert": trunk["distilbert"],
              "pre_classifier": {"kernel": tensors["pre_classifier.weight"].T, "bias": tensors["pre_classifier.bias"]},
              "classifier": {"kernel": tensors["classifier.weight"].T, "bias": tensors["classifier.bias"]}}
    model = heads.build("distilbert", config, "classification", num_labels=3)
    tokens, mask = _inputs()
    ours = model.apply({"params": params}, jnp.asarray(tokens, jnp.int32), mask_BT=jnp.asarray(mask))
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64))).logits
    np.testing.assert_allclose(np.asarray(ours.logits_BC), theirs.numpy(), **MODEL_TOL)


# ------------------------------------------------------------------------------- student from a teacher


@pytest.fixture(scope="module")
def bert_teacher():
    cfg = models.make_config("bert", vocab_size=VOCAB, hidden_size=WIDTH, num_layers=3, num_heads=HEADS,
                             intermediate_size=FFN, max_position_embeddings=T + 4)
    rng = np.random.default_rng(7)
    flat = {p: (0.1 * rng.standard_normal(s)).astype(np.float32) + (1.0 if p.endswith("norm/scale") else 0.0)
            for p, s in state_dict.param_shapes("bert", cfg).items()}
    return cfg, traverse_util.unflatten_dict(flat, sep="/")


def test_student_takes_one_layer_out_of_two(bert_teacher):
    t_cfg, t_params = bert_teacher
    request = dataclasses.replace(models.get_preset("distilbert-tiny")[1], num_layers=2, hidden_dropout=0.0)
    cfg, params = distilbert.params_from("bert", t_cfg, t_params, request)
    assert (cfg.num_layers, cfg.hidden_size, cfg.vocab_size, cfg.hidden_dropout) == (2, WIDTH, VOCAB, 0.0)
    assert jax.tree.structure(params) == jax.tree.structure(_random_params(cfg, 0))
    t_layers = traverse_util.flatten_dict(t_params["bert"]["encoder"], sep="/")
    for path, value in traverse_util.flatten_dict(params["distilbert"]["encoder"], sep="/").items():
        np.testing.assert_array_equal(value, t_layers[path][[0, 2]])  # teacher layers 0 and 2
    np.testing.assert_array_equal(params["mlm_head"]["bias"], t_params["mlm_head"]["bias"])
    # Token type 0 folded into the positions: on a single-segment input the embeddings are the teacher's.
    tokens, _ = _inputs()
    x = jnp.asarray(tokens, jnp.int32)
    pos = jnp.broadcast_to(jnp.arange(T), x.shape)
    ours = distilbert.Embeddings(cfg).apply({"params": params["distilbert"]["embeddings"]}, x, None, pos, True)
    theirs = bert.Embeddings(t_cfg).apply({"params": t_params["bert"]["embeddings"]}, x, jnp.zeros_like(x), pos, True)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-5)


def test_student_start_errors(bert_teacher):
    t_cfg, t_params = bert_teacher
    request = dataclasses.replace(models.get_preset("distilbert-tiny")[1], num_layers=3)
    with pytest.raises(ValueError, match="at least 5 layers"):
        distilbert.params_from("bert", t_cfg, t_params, request)
    with pytest.raises(ValueError, match="BERT teacher"):
        distilbert.params_from("roberta", t_cfg, t_params, request)
    model = models.build("distilbert", dataclasses.replace(request, vocab_size=VOCAB))
    with pytest.raises(ValueError, match="no token types"):
        model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32), segment_ids_BT=jnp.ones((1, 4), jnp.int32))


# ---------------------------------------------------------------------------------------- the loss

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)


@pytest.fixture(scope="module")
def distill_setup():
    cfg = models.make_config("distilbert", vocab_size=VOCAB, hidden_size=WIDTH, num_layers=LAYERS, num_heads=HEADS,
                             intermediate_size=FFN, max_position_embeddings=T + 4)
    objective = objectives.make_objective(objectives.config_for("distill", max_predictions=4), SPECIAL, VOCAB)
    rng = np.random.default_rng(3)
    mask = np.arange(T)[None, :] < np.array([12, 9, 7, 12])[:, None]
    tokens = np.where(mask, rng.integers(5, VOCAB, mask.shape), 0).astype(np.int32)
    batch = objective.prepare({"tokens": tokens, "mask": mask, "epoch": np.zeros(4, np.int64),
                               "example_index": np.arange(4)}, seed=0)
    student = models.build("distilbert", cfg)
    params = _random_params(cfg, seed=5)
    return objective, student, params, _random_params(cfg, seed=6), jax.tree.map(jnp.asarray, batch)


def _jitted_loss(objective, student):
    """The loss with the student as its own teacher module (params differ per test), dropout off, jitted."""
    loss_fn = objective.make_loss(student, frozen_models={"teacher": student})
    return jax.jit(lambda p, b, f, d=None: loss_fn(p, b, jax.random.key(0), frozen=f, denominators=d,
                                                   deterministic=True))


def test_teacher_equal_to_student_leaves_only_the_mlm_term(distill_setup):
    objective, student, params, _, batch = distill_setup
    loss, (m, _) = _jitted_loss(objective, student)(params, batch, {"teacher": params})
    assert abs(float(m["ce_loss"])) < 1e-5 and abs(float(m["cos_loss"])) < 1e-5
    np.testing.assert_allclose(float(loss), 2.0 * float(m["mlm_loss"]), rtol=1e-5)


def test_loss_terms_and_exact_accumulation(distill_setup):
    objective, student, params, teacher_params, batch = distill_setup
    loss_fn = _jitted_loss(objective, student)
    frozen = {"teacher": teacher_params}
    full, (m, _) = loss_fn(params, batch, frozen)
    assert float(m["ce_loss"]) > 0 and float(m["cos_loss"]) > 0
    np.testing.assert_allclose(float(full), 5 * float(m["ce_loss"]) + 2 * float(m["mlm_loss"])
                               + float(m["cos_loss"]), rtol=1e-5)
    den = objective.loss_denominators(batch)
    halves = [loss_fn(params, {k: v[i:i + 2] for k, v in batch.items()}, frozen, den) for i in (0, 2)]
    for key in ("loss", "ce_loss", "mlm_loss", "cos_loss"):
        np.testing.assert_allclose(sum(float(h[1][0][key]) for h in halves), float(m[key]), rtol=1e-5)


def test_teacher_of_another_vocabulary_is_refused(distill_setup):
    objective, student, *_ = distill_setup
    other = models.build("distilbert", dataclasses.replace(student.cfg, vocab_size=VOCAB + 1))
    with pytest.raises(ValueError, match="share vocabulary and width"):
        objective.make_loss(student, frozen_models={"teacher": other})


# ---------------------------------------------------------------------------------------------- CLI

SMALL = ["--config.data.max_documents=300", "--config.data.max_eval_documents=20", "--config.data.seq_len=32",
         "--config.train.batch_size=16", "--config.train.progress=False", "--config.train.log_every=1",
         "--config.train.eval_every=0", "--config.optim.warmup_steps=0", "--config.optim.learning_rate=3e-3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("distil")
    teacher, student = base / "teacher", base / "student"
    assert cli.main(["pretrain", "--config", f"{ROOT / 'configs' / 'bert.py'}:size=tiny", "--workdir", str(teacher),
                     *SMALL, "--config.data.vocab_size=600", "--config.train.steps=20",
                     "--config.train.checkpoint_every=20"]) == 0
    assert cli.main(["pretrain", "--config", f"{ROOT / 'configs' / 'distilbert.py'}:size=tiny,teacher={teacher}",
                     "--workdir", str(student), *SMALL, "--config.train.steps=40",
                     "--config.train.checkpoint_every=40"]) == 0
    return teacher, student


def test_distillation_run_logs_the_terms_and_lowers_the_loss(runs):
    teacher, student = runs
    rows = [r for r in read_metrics(student) if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 41))
    for r in rows:
        np.testing.assert_allclose(r["loss"], 5 * r["ce_loss"] + 2 * r["mlm_loss"] + r["cos_loss"], rtol=1e-4)
    mean = lambda rs, k: float(np.mean([r[k] for r in rs]))
    assert mean(rows[-10:], "loss") < mean(rows[:10], "loss") - 0.2
    assert mean(rows[-10:], "cos_loss") < mean(rows[:10], "cos_loss")
    # The student reads the teacher's tokenizer (not one trained anew) and starts from its layer 0.
    assert (student / "tokenizer.json").read_text() == (teacher / "tokenizer.json").read_text()


def test_recipe_without_a_teacher_is_a_clear_error():
    with pytest.raises(ValueError, match="needs its BERT teacher"):
        config_lib.load_config_file(f"{ROOT / 'configs' / 'distilbert.py'}:size=tiny")


def test_finetune_from_the_student(runs, tmp_path):
    _, student = runs
    assert cli.main(["finetune", "--config", f"{ROOT / 'configs' / 'finetune.py'}:model={student},task=wordnet-wic",
                     "--workdir", str(tmp_path), "--config.train.progress=False", "--config.data.seq_len=32",
                     "--config.data.train_examples=64", "--config.train.steps=4", "--config.train.eval_every=4",
                     "--config.train.eval_examples=32"]) == 0
    assert (tmp_path / "results.json").exists()

"""XLNet: parameter counts equal Hugging Face's, HF parity both ways (plain calls with padding and token types, calls
with a permutation mask and a target mapping, calls with memory over two segments) on odd-shaped random models, no
prediction sees its own token or a later one of its factorization order, the permutation-LM objective, the summary
head against `XLNetForSequenceClassification`, and a CLI pretraining run converted both ways and fine-tuned."""

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

from llm_jax import cli, flops, models, objectives
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.interop import load_hf_with_report, save_hf, state_dict
from llm_jax.models import xlnet
from llm_jax.objectives import plm
from llm_jax.train.step import abstract_params, count_params

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL_TOL = dict(rtol=1e-4, atol=1e-4)
# Odd shapes: F ≠ 4D, 3 layers, K = 12. Two variants: XLNet's pretraining options ("bi" distances clamped at 3,
# bi_data's negated second half of the batch, a memory of 5 slots fed by the first 4 positions of a segment) and
# the causal "uni" with same_length and an unbounded memory. transformers' "uni" cannot take an attention or
# permutation mask for more than one row (`attn_mask += data_mask` broadcasts in place and fails), so that variant
# runs without them.
VOCAB, D, LAYERS, HEADS, FFN, T = 97, 48, 3, 4, 72, 9
VARIANTS = {"bi": dict(attn_type="bi", clamp_len=3, bi_data=True, mem_len=5, reuse_len=4),
            "uni": dict(attn_type="uni", same_length=True, mem_len=None)}
BATCH = 4
SPECIAL = SpecialIds(unk=0, bos=1, eos=2, cls=3, sep=4, pad=5, mask=6, eod=7)


def _count(cfg) -> int:
    objective = objectives.shape_only_objective(xlnet.DEFAULT_OBJECTIVE, cfg.vocab_size)
    return count_params(abstract_params(models.build("xlnet", cfg), objective, objective.dummy_batch(1, 16)))


# ---------------------------------------------------------------------------------------- counts, contract


@pytest.mark.parametrize("preset", sorted(xlnet.PRESETS))
def test_parameter_count_equals_hugging_face(preset, require):
    torch = require("torch")
    transformers = require("transformers")
    cfg = xlnet.PRESETS[preset]
    hf = dict(xlnet.config_to_hf(cfg))
    with torch.device("meta"):
        model = transformers.XLNetLMHeadModel(transformers.AutoConfig.for_model(hf.pop("model_type"), **hf))
    assert _count(cfg) == sum(p.numel() for p in model.parameters())


def test_published_sizes():
    # XLNetLMHeadModel of xlnet-base-cased / xlnet-large-cased (tied head, counted once; its bias counted).
    assert (_count(xlnet.PRESETS["xlnet-base"]), _count(xlnet.PRESETS["xlnet-large"])) == (116_750_336, 360_300_800)


def test_family_contract_config_and_errors():
    assert models.check_family(xlnet) == []
    for cfg in xlnet.PRESETS.values():
        assert xlnet.config_from_hf(xlnet.config_to_hf(cfg)) == dataclasses.replace(
            cfg, attention_dropout=cfg.hidden_dropout)
    tiny = xlnet.PRESETS["xlnet-tiny"]
    for bad, match in ((dict(n_head=5), "divisible"), (dict(attn_type="txl"), "attn_type"),
                       (dict(mem_len=-1), "mem_len"), (dict(pad_token_id=40000), "pad_token_id")):
        with pytest.raises(ValueError, match=match) as e:
            dataclasses.replace(tiny, **bad).validate()
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="untie_r"):
        xlnet.config_from_hf({**xlnet.config_to_hf(tiny), "untie_r": False})
    assert tiny.with_vocabulary(300, SPECIAL).pad_token_id == 5 and tiny.memory_shape(7) == (2, 7, 128)


def test_towers_count_the_query_stream_at_predicted_positions_only():
    cfg = xlnet.PRESETS["xlnet-large"]
    content, query = flops.towers_for("xlnet", cfg, objectives.config_for("plm"), 512)
    assert (content.seq_len, content.lm_positions, content.relative_positions) == (512, 0, 1024)
    assert (query.seq_len, query.attention_keys, query.shared_kv, query.lm_positions) == (85, 512, True, 85)
    # The query stream adds its per-position work at 85 of 512 positions: well under the content stream's.
    c = flops.tower_forward_terms(content, dropout=False)
    q = flops.tower_forward_terms(query, dropout=False)
    assert 0.1 < (sum(q.values()) - q["matmul/lm_head/vocab"]) / sum(c.values()) < 0.25
    assert "matmul/layers/self_attn/kv" not in q and q["matmul/layers/self_attn/scores"] == 2 * 85 * 1024 * 512 * 24
    assert c["matmul/layers/self_attn/rel_pos"] == 2 * 1024 * 1024 * 1024 * 24  # R = 2T rows projected per layer
    # XLNet-Large's pretraining memory (mem_len 384, §3.1): M more keys in both streams and M more distances.
    mem_content, mem_query = flops.towers_for("xlnet", cfg, objectives.config_for("plm", mem_len=384, reuse_len=256),
                                              512)
    assert (mem_content.attention_memory, mem_content.relative_positions) == (384, 1024 + 384)
    assert (mem_query.attention_keys, mem_query.attention_memory) == (512, 384)
    qm = flops.tower_forward_terms(mem_query, dropout=False)
    assert qm["matmul/layers/self_attn/scores"] == 2 * 85 * 1024 * (512 + 384) * 24
    cm = flops.tower_forward_terms(mem_content, dropout=False)
    assert cm["matmul/layers/self_attn/rel_pos"] == 2 * (1024 + 384) * 1024 * 1024 * 24


# ------------------------------------------------------------------------------------------- HF parity


def _hf_config(transformers, variant, **extra):
    return transformers.XLNetConfig(vocab_size=VOCAB, d_model=D, n_layer=LAYERS, n_head=HEADS, d_inner=FFN,
                                    dropout=0.0, **{**VARIANTS[variant], **extra})


def _randomize(torch, model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every weight random, LayerNorm scales near 1
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if name.endswith("layer_norm.weight") else 0.2 * noise)
    return model.eval()


def _order_masks(rng, b, t, p):
    """A random factorization order per row: `perm_mask` (True = i may not see j: j not before i) and the last p
    positions of the order as the targets (`target_mapping` `[B, P, T]`)."""
    perm = np.zeros((b, t, t), bool)
    mapping = np.zeros((b, p, t), np.float32)
    for r in range(b):
        rank = np.argsort(rng.permutation(t))
        perm[r] = rank[None, :] >= rank[:, None]
        perm[r, np.arange(t), np.arange(t)] &= rank >= t - p  # non-targets see themselves (content stream does)
        mapping[r, np.arange(p), np.flatnonzero(rank >= t - p)] = 1.0
    return perm, mapping


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(8, VOCAB, (BATCH, T))
    segments = np.array([[0, 0, 0, 0, 1, 1, 1, 1, 2]] * BATCH)
    mask = np.ones((BATCH, T), bool)
    mask[1, :3] = mask[2, :1] = False  # left padding
    tokens[~mask] = 5
    perm, mapping = _order_masks(rng, BATCH, T, 3)
    return tokens.astype(np.int64), segments, mask, perm, mapping


def _theirs(torch, model, tokens, segments, mask, perm=None, mapping=None, mems=None):
    t = lambda x: None if x is None else torch.tensor(x)
    full = mask.all()  # the "uni" variant: no mask (see VARIANTS)
    with torch.no_grad():
        out = model(input_ids=t(tokens), token_type_ids=t(segments),
                    attention_mask=None if full else t(mask.astype(np.float32)),
                    perm_mask=t(None if perm is None else perm.astype(np.float32)), target_mapping=t(mapping),
                    mems=mems, use_mems=True)
    return out.logits.numpy(), out.mems


_FORWARD = {}


def _ours(cfg, params, tokens, segments, mask, perm=None, mapping=None, mems=None):
    """Our forward (jitted once per config and input structure), returning new memory as HF does."""
    key = (cfg, perm is None, mems is None)
    if key not in _FORWARD:
        model = models.build("xlnet", cfg)
        _FORWARD[key] = jax.jit(lambda p, x, s, m, pm, tm, mem: model.apply(
            {"params": p}, x, segment_ids_BT=s, mask_BT=m, perm_mask_BTT=pm, target_mapping_BPT=tm, mems_LBMD=mem,
            return_mems=True))
    cast = lambda x: None if x is None else jnp.asarray(x)
    out = _FORWARD[key](params, cast(tokens.astype(np.int32)), cast(segments.astype(np.int32)), cast(mask),
                        cast(perm), cast(mapping), mems)
    return jax.tree.map(np.asarray, out)


def _check_two_segments(torch, hf, cfg, params):
    """Segment 1 plain, segment 2 with the permutation mask, the target mapping and segment 1's memory: logits and
    new memory equal HF's (`mems` lists of `[M, B, D]`, ours `[L, B, M, D]`)."""
    tokens, segments, mask, perm, mapping = _inputs(0)
    if cfg.attn_type == "uni":
        mask, perm = np.ones_like(mask), None
    ours1 = _ours(cfg, params, tokens, segments, mask)
    theirs1, mems1 = _theirs(torch, hf, tokens, segments, mask)
    np.testing.assert_allclose(ours1.logits_BTV, theirs1, **MODEL_TOL)
    np.testing.assert_allclose(ours1.mems_LBMD, np.stack([m.numpy().swapaxes(0, 1) for m in mems1]), **MODEL_TOL)
    tokens2, segments2, _, _, _ = _inputs(1)
    full = np.ones_like(mask)
    ours2 = _ours(cfg, params, tokens2, segments2, full, perm, mapping, jnp.asarray(ours1.mems_LBMD))
    theirs2, mems2 = _theirs(torch, hf, tokens2, segments2, full, perm, mapping, mems1)
    assert ours2.logits_BTV is None and ours2.logits_BPV.shape == (BATCH, 3, VOCAB)
    np.testing.assert_allclose(ours2.logits_BPV, theirs2, **MODEL_TOL)
    np.testing.assert_allclose(ours2.mems_LBMD, np.stack([m.numpy().swapaxes(0, 1) for m in mems2]), **MODEL_TOL)
    # Without memory, with the query stream.
    ours3 = _ours(cfg, params, tokens, segments, mask, perm, mapping)
    np.testing.assert_allclose(ours3.logits_BPV, _theirs(torch, hf, tokens, segments, mask, perm, mapping)[0],
                               **MODEL_TOL)


@pytest.fixture(scope="module")
def hf_models(require, tmp_path_factory):
    """variant → (a random HF XLNetLMHeadModel, the directory `save_pretrained` wrote it to)."""
    torch = require("torch")
    transformers = require("transformers")
    out = {}
    for i, variant in enumerate(VARIANTS):
        model = _randomize(torch, transformers.XLNetLMHeadModel(_hf_config(transformers, variant)), i)
        path = tmp_path_factory.mktemp(f"xlnet-{variant}")
        model.save_pretrained(path)
        out[variant] = (model, path)
    return torch, transformers, out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_from_transformers_matches(hf_models, variant):
    torch, _, built = hf_models
    model, path = built[variant]
    loaded = load_hf_with_report(path)
    assert loaded.family == "xlnet" and loaded.report.initialized == () and loaded.report.unexpected == ()
    cfg = loaded.config
    assert (cfg.d_model, cfg.n_layer, cfg.attn_type, cfg.bi_data) == (D, LAYERS, variant, variant == "bi")
    _check_two_segments(torch, model, cfg, loaded.params)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ours_to_transformers_loads_cleanly_and_matches(hf_models, variant, tmp_path):
    torch, transformers, _ = hf_models
    cfg = xlnet.config_from_hf(_hf_config(transformers, variant).to_dict())
    rng = np.random.default_rng(4)
    flat = {path: (1 if path.endswith("norm/scale") else 0) + 0.2 * rng.standard_normal(shape).astype(np.float32)
            for path, shape in state_dict.param_shapes("xlnet", cfg).items()}
    params = traverse_util.unflatten_dict(flat, sep="/")
    save_hf("xlnet", cfg, params, tmp_path)
    hf, info = transformers.XLNetLMHeadModel.from_pretrained(tmp_path, output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}
    assert hf.lm_loss.weight is hf.transformer.word_embedding.weight
    _check_two_segments(torch, hf.eval(), cfg, params)


def test_summary_head_matches_xlnet_for_sequence_classification(require):
    """The fine-tuning head on the trunk: `sequence_summary` (dense + tanh on the last position, `<cls>`) and
    `logits_proj`, with HF's names, on left-padded pairs."""
    from llm_jax.models import heads

    torch = require("torch")
    transformers = require("transformers")
    hf = _randomize(torch, transformers.XLNetForSequenceClassification(_hf_config(transformers, "bi",
                                                                                  num_labels=3)), 7)
    tensors = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    cfg = xlnet.config_from_hf(hf.config.to_dict())
    trunk, _ = state_dict.from_hf_state_dict("xlnet", cfg, tensors)
    linear = lambda name: {"kernel": tensors[f"{name}.weight"].T, "bias": tensors[f"{name}.bias"]}
    params = {"transformer": trunk["transformer"], "sequence_summary": {"summary": linear("sequence_summary.summary")},
              "logits_proj": linear("logits_proj")}
    tokens, segments, mask, _, _ = _inputs(2)
    out = heads.build("xlnet", cfg, "classification", num_labels=3).apply(
        {"params": params}, jnp.asarray(tokens, jnp.int32), mask_BT=jnp.asarray(mask),
        segment_ids_BT=jnp.asarray(segments, jnp.int32))
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.float32)),
                    token_type_ids=torch.tensor(segments)).logits.numpy()
    np.testing.assert_allclose(out.logits_BC, theirs, **MODEL_TOL)


# ------------------------------------------------------------------------------------ no leak of the target


def test_no_prediction_sees_its_own_token_or_a_later_one():
    """The query-stream state that the LM head reads at each predicted position: its gradient with respect to the
    input embedding of its own token, and of every token at or after it in the factorization order, is exactly
    zero; tokens before it in the order (and the unpredicted context) do reach it. Batches from `Plm.prepare`
    (spans, permutation, both parts, `<sep>` / `<cls>`); tokens distinct within a row so that an embedding row is one
    position."""
    t, b = 24, 2
    cfg = dataclasses.replace(xlnet.PRESETS["xlnet-tiny"], vocab_size=64, hidden_dropout=0.0, attention_dropout=0.0)
    objective = plm.Plm(plm.PlmConfig(partial_prediction_k=3), SPECIAL, 64)
    rng = np.random.default_rng(0)
    # reuse (12) ++ A (4) <sep> B (5) <sep> <cls>, distinct ordinary tokens.
    rows = np.stack([8 + rng.permutation(56)[:t] for _ in range(b)])
    rows[:, 16] = rows[:, 22] = SPECIAL.sep
    rows[:, 23] = SPECIAL.cls
    segments = np.zeros((b, t), np.int32)
    segments[:, 17:23], segments[:, 23] = 1, 2
    batch = objective.prepare({"tokens": rows, "segment_ids": segments, "epoch": np.zeros(b, int),
                               "example_index": np.arange(b)}, seed=3)
    model = xlnet.XLNetModel(cfg)
    args, kwargs = objective.init_inputs(batch)
    params = nn.meta.unbox(jax.jit(lambda k: model.init(k, *args, **kwargs))(jax.random.key(0))["params"])
    direction_D = jnp.asarray(rng.standard_normal(cfg.d_model), jnp.float32)

    def g_BP(table_VD):  # each predicted position's query-stream state, projected on one direction
        ps = {**params, "word_embedding": {"embedding": table_VD}}
        return model.apply({"params": ps}, *args, **kwargs).query_BPD @ direction_D

    jac_BPVD = np.asarray(jax.jit(jax.jacrev(g_BP))(params["word_embedding"]["embedding"]))
    perm = batch["perm_mask"]
    checked = 0
    for r in range(b):
        unique = np.array([np.sum(rows[r] == rows[r, j]) == 1 for j in range(t)])  # <sep> repeats
        for p in np.flatnonzero(batch["weights"][r]):
            i = int(np.argmax(batch["target_mapping"][r, p]))
            g_T = np.abs(jac_BPVD[r, p][rows[r]]).sum(-1)  # per position (distinct tokens)
            hidden = perm[r, i]
            assert hidden[i] and g_T[i] == 0.0, (r, p, i)
            assert np.all(g_T[hidden & unique] == 0.0), (r, i, np.flatnonzero(g_T[hidden & unique]))
            assert np.all(g_T[~hidden & unique] > 0.0), (r, i, np.flatnonzero(g_T[~hidden & unique] == 0))
            checked += 1
    assert checked >= 2 * 6


# ------------------------------------------------------------------------------------- permutation LM objective


def _docs(n_docs=6, seed=0):
    """Documents of numbered sentences (ids ≥ 8, every sentence a few distinct pieces)."""
    rng = np.random.default_rng(seed)
    return [[rng.integers(8, 60, rng.integers(3, 9)) for _ in range(rng.integers(4, 9))] for _ in range(n_docs)]


def test_rows_are_reuse_then_a_sep_b_sep_cls_of_parallel_streams():
    objective = plm.Plm(plm.PlmConfig(), SPECIAL, 64)
    b, t = 2, 24
    rows = objective.build_examples(_docs(), t, seed=0, batch_size=b)
    tokens, segments = rows["tokens"], rows["segment_ids"]
    assert tokens.shape[0] % b == 0 and tokens.shape[0] >= 2 * b and tokens.shape[1] == t
    reuse = t // 2
    stream = np.concatenate([s for doc in _docs() for s in [*doc, np.asarray([SPECIAL.eod])]])
    streams = stream[:b * (stream.size // b)].reshape(b, -1)
    for n in range(tokens.shape[0] // b):
        for r in range(b):
            row, seg = tokens[n * b + r], segments[n * b + r]
            # The reused part continues stream r where the previous row's did (the memory precedes it).
            np.testing.assert_array_equal(row[:reuse], streams[r, n * reuse:(n + 1) * reuse])
            assert row[-1] == SPECIAL.cls and seg[-1] == 2
            seps = np.flatnonzero(row[reuse:] == SPECIAL.sep) + reuse
            assert seps[-1] == t - 2 and np.all(seg[:seps[-2] + 1] == 0) and np.all(seg[seps[-2] + 1:t - 1] == 1)
    with pytest.raises(ValueError, match="too short"):
        objective.build_examples(_docs(1), t, seed=0, batch_size=16)
    with pytest.raises(ValueError, match="perm_size"):
        plm.PlmConfig(perm_size=5).lengths(24)


def test_bi_data_puts_the_reversed_streams_in_the_second_half_of_each_batch():
    # The reference's bi_data: B/2 forward streams, and the same streams reversed as rows B/2 … B−1 of each batch.
    objective = plm.Plm(plm.PlmConfig(bi_data=True), SPECIAL, 64)
    b, t = 4, 24
    rows = objective.build_examples(_docs(8), t, seed=0, batch_size=b)["tokens"]
    reuse = t // 2
    stream = np.concatenate([s for doc in _docs(8) for s in [*doc, np.asarray([SPECIAL.eod])]])
    forward = stream[:2 * (stream.size // 2)].reshape(2, -1)
    streams = np.concatenate([forward, forward[:, ::-1]])
    assert rows.shape[0] >= 2 * b
    for n in range(rows.shape[0] // b):
        for r in range(b):
            np.testing.assert_array_equal(rows[n * b + r, :reuse], streams[r, n * reuse:(n + 1) * reuse])
    with pytest.raises(ValueError, match="must be even"):
        objective.build_examples(_docs(8), t, seed=0, batch_size=3)
    tiny = xlnet.PRESETS["xlnet-tiny"] if "xlnet-tiny" in xlnet.PRESETS else None
    model_cfg = dataclasses.replace(tiny or next(iter(xlnet.PRESETS.values())), bi_data=False)
    with pytest.raises(ValueError, match="objective.bi_data=True but model.bi_data=False"):
        objective.make_loss(models.build("xlnet", model_cfg))


def test_prepare_draws_partial_prediction_over_a_factorization_order():
    """P = T / K predictions per row, each of its own token, never `<sep>` / `<cls>`; the unpredicted tokens are seen
    by every position and see no predicted one of their part; the reused part never sees the new part (which sees
    all of it); a predicted position
    never sees itself (the content stream's mask adds the diagonal back in the model); draws depend on (seed,
    epoch, example) only."""
    objective = plm.Plm(plm.PlmConfig(partial_prediction_k=6), SPECIAL, 64)
    t = 48
    rows = objective.build_examples(_docs(12), t, seed=0, batch_size=4)
    pick = {"tokens": rows["tokens"][:4], "segment_ids": rows["segment_ids"][:4], "epoch": np.zeros(4, int),
            "example_index": np.arange(4)}
    batch = objective.prepare(pick, seed=1)
    assert batch["target_mapping"].shape == (4, 8, t) and batch["perm_mask"].shape == (4, t, t)
    reuse = t // 2
    for r in range(4):
        x, perm = batch["inputs"][r], batch["perm_mask"][r]
        where = np.argmax(batch["target_mapping"][r], -1)[batch["weights"][r] > 0]
        assert where.size >= 6 and np.all(batch["targets"][r, :where.size] == x[where])
        assert not np.isin(x[where], [SPECIAL.sep, SPECIAL.cls]).any()
        predicted = np.zeros(t, bool)
        predicted[where] = True
        functional = np.isin(x, [SPECIAL.sep, SPECIAL.cls])
        plain = ~predicted & ~functional
        first = np.arange(t) < reuse
        assert not perm[~first][:, plain].any() and not perm[first][:, plain & first].any()
        for part in (first, ~first):  # within a part; the new part sees all of the reused one (earlier in order)
            assert perm[plain & part][:, predicted & part].all()
        assert perm[:reuse, reuse:].all() and perm[where, where].all()
        # The predicted tokens of a part follow one order: i sees j or j sees i, never both.
        for lo, hi in ((0, reuse), (reuse, t)):
            sub = predicted[lo:hi]
            block = perm[lo:hi, lo:hi][sub][:, sub]
            off = ~np.eye(sub.sum(), dtype=bool)
            assert np.all((block != block.T)[off])
    again = objective.prepare(pick, seed=1)
    np.testing.assert_array_equal(again["perm_mask"], batch["perm_mask"])
    other = objective.prepare({**pick, "epoch": np.ones(4, int)}, seed=1)
    assert not np.array_equal(other["perm_mask"], batch["perm_mask"])


def test_sample_mask_chooses_the_goal_in_spans_at_word_starts():
    rng = np.random.default_rng(0)
    starts = rng.random(200) < 0.6
    for goal in (0, 1, 33):
        mask = plm.sample_mask(starts, goal, 6, 5, np.random.default_rng(goal))
        assert mask.sum() == goal
    mask = plm.sample_mask(np.ones(600, bool), 100, 6, 5, np.random.default_rng(1))
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]]))))[::2]
    assert runs.max() <= 5 and runs.mean() > 1.5  # n-grams, P(n) ∝ 1/n over 1..5: mean ≈ 2.19


# ------------------------------------------------------------------------------------ CLI pretrain + export


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("xlnet") / "run"
    rc = cli.main(["pretrain", "--config", str(ROOT / "configs" / "xlnet.py:size=tiny"), "--workdir", str(run),
                   "--config.data.max_documents=400", "--config.data.max_eval_documents=20",
                   "--config.data.vocab_size=600", "--config.data.seq_len=64", "--config.train.steps=30",
                   "--config.train.batch_size=8", "--config.train.progress=False", "--config.train.log_every=1",
                   "--config.train.eval_every=30", "--config.train.eval_batches=1",
                   "--config.train.checkpoint_every=30", "--config.optim.warmup_steps=5",
                   "--config.optim.learning_rate=2e-3"])
    assert rc == 0
    return run


def test_cli_pretraining_lowers_the_loss(cli_run):
    rows = [json.loads(line) for line in (cli_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "loss" in r]
    first, last = np.mean([r["loss"] for r in train[:5]]), np.mean([r["loss"] for r in train[-5:]])
    assert last < first - 0.5, (first, last)
    assert any("eval_loss" in r for r in rows)
    config = json.loads((cli_run / "config.json").read_text())
    assert config["objective"]["name"] == "plm" and config["objective"]["mem_len"] == 64


def test_convert_both_ways_and_the_tokenizer_in_transformers(cli_run, tmp_path, require):
    torch = require("torch")
    transformers = require("transformers")
    assert cli.main(["convert", "--to-hf", str(cli_run), "--out", str(tmp_path / "hf")]) == 0
    hf, info = transformers.XLNetLMHeadModel.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}, info
    fast = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    # XLNet's special ids, `A <sep> B <sep> <cls>` with token types 0 / 1 / 2, left padding; the slow
    # (SentencePiece) tokenizer reads the same ids from spiece.model alone.
    assert [fast.convert_tokens_to_ids(t) for t in ("<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>",
                                                    "<eod>", "<eop>")] == list(range(9))
    pair = ("The first sentence.", "And the second one.")
    enc = fast(*pair, return_token_type_ids=True)
    assert enc.input_ids[-2:] == [4, 3] and enc.token_type_ids[-1] == 2 and fast.padding_side == "left"
    shutil.copytree(tmp_path / "hf", tmp_path / "spm")
    (tmp_path / "spm" / "tokenizer.json").unlink()
    spm = transformers.AutoTokenizer.from_pretrained(tmp_path / "spm")
    assert type(spm).__name__ == "XLNetTokenizer" and spm(*pair).input_ids == enc.input_ids
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        theirs = hf.eval()(input_ids=ids, token_type_ids=torch.tensor([enc.token_type_ids])).logits.numpy()
    loaded = load_hf_with_report(tmp_path / "hf")
    ours = models.build("xlnet", loaded.config).apply(
        {"params": loaded.params}, jnp.asarray(ids.numpy(), jnp.int32),
        segment_ids_BT=jnp.asarray([enc.token_type_ids], jnp.int32))
    np.testing.assert_allclose(np.asarray(ours.logits_BTV), theirs, **MODEL_TOL)
    assert cli.main(["convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "ours")]) == 0


def test_finetune_from_the_xlnet_run(cli_run, tmp_path):
    """`llm-jax finetune` on a bundled pair task: left-padded `A <sep> B <sep> <cls>` rows, the summary head on the
    last position."""
    assert cli.main(["finetune", "--config", f"{ROOT / 'configs' / 'finetune.py'}:model={cli_run},task=wordnet-wic",
                     "--workdir", str(tmp_path), "--config.train.progress=False", "--config.data.seq_len=48",
                     "--config.data.train_examples=64", "--config.train.steps=4", "--config.train.eval_every=4",
                     "--config.train.eval_examples=32"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert 0.0 <= results["validation"]["accuracy"] <= 1.0

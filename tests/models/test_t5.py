"""T5: parameter counts equal Hugging Face's, HF parity both ways for v1.0 (ReLU, tied) and v1.1 (gated-GELU,
untied), incremental decoding with the caches equals teacher forcing, greedy and beam search equal transformers'
`generate`, the span-corruption objective, and a CLI pretraining run on the bundled corpus exported to transformers
and back, and generating from the export."""

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
from llm_jax.config import load_config_file
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.interop import load_hf, load_hf_with_report, read_hf_config, save_hf, state_dict
from llm_jax.models import t5
from llm_jax.objectives import span_corruption as sc
from llm_jax.train.step import abstract_params, count_params

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL_TOL = dict(rtol=1e-4, atol=1e-4)
# Odd shapes: H·K ≠ D, different encoder and decoder depths, and few buckets with a short max distance so that the
# log-spaced buckets (and the last, shared one) are exercised at these lengths.
VOCAB, D, KV, HEADS, FFN, ENC_LAYERS, DEC_LAYERS, BUCKETS, MAX_DISTANCE = 101, 40, 12, 3, 56, 3, 2, 8, 10
S, T = 14, 9
LENGTHS = (14, 9, 5)
VARIANTS = {"v1.0": dict(feed_forward_proj="relu", tie_word_embeddings=True),
            "v1.1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)}


def _count(cfg) -> int:
    objective = objectives.shape_only_objective(t5.DEFAULT_OBJECTIVE, cfg.vocab_size)
    return count_params(abstract_params(models.build("t5", cfg), objective, objective.dummy_batch(1, 16)))


# ---------------------------------------------------------------------------------------- counts, contract


def _hf_model(torch, transformers, hf: dict, *, untie: bool, device="meta"):
    """`T5ForConditionalGeneration` from a config dict; with `untie`, the head gets a Parameter of its own.

    transformers 5 forces `tie_word_embeddings=True` for T5 (it keeps a v1.1 head untied only when a checkpoint
    holds a different `lm_head.weight`), so an untied model is built by giving `lm_head` its own Parameter.
    """
    hf = dict(hf)
    config = transformers.AutoConfig.for_model(hf.pop("model_type"), **hf)
    with torch.device(device):
        model = transformers.T5ForConditionalGeneration(config)
        if untie:
            model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.lm_head.weight))
    return model


# t5-11b's HF count is the reference figure `test_published_sizes` checks (building it takes ~10 s even on meta).
@pytest.mark.parametrize("preset", sorted(set(t5.PRESETS) - {"t5-11b"}))
def test_parameter_count_equals_hugging_face(preset, require):
    torch = require("torch")
    transformers = require("transformers")
    cfg = t5.PRESETS[preset]
    hf = _hf_model(torch, transformers, t5.config_to_hf(cfg), untie=not cfg.tie_word_embeddings)
    assert _count(cfg) == sum(p.numel() for p in hf.parameters())


def test_published_sizes():
    # reference/figures.md §1.6: T5ForConditionalGeneration, v1.1 untied as published (transformers 4.57.6's count;
    # transformers 5 ties the head and counts V·d less).
    counts = {p: _count(t5.PRESETS[p]) for p in ("t5-small", "t5-base", "t5-large", "t5-3b", "t5-11b",
                                                  "t5-v1_1-small", "t5-v1_1-base", "t5-v1_1-large", "t5-v1_1-xl",
                                                  "t5-v1_1-xxl")}
    assert counts == {"t5-small": 60_506_624, "t5-base": 222_903_552, "t5-large": 737_668_096,
                      "t5-3b": 2_851_598_336, "t5-11b": 11_307_321_344, "t5-v1_1-small": 76_961_152,
                      "t5-v1_1-base": 247_577_856, "t5-v1_1-large": 783_150_080, "t5-v1_1-xl": 2_849_757_184,
                      "t5-v1_1-xxl": 11_135_332_352}


def test_family_contract_config_and_errors():
    assert models.check_family(t5) == []
    for cfg in t5.PRESETS.values():
        assert t5.config_from_hf(t5.config_to_hf(cfg)) == dataclasses.replace(
            cfg, attention_dropout=cfg.hidden_dropout)
    small = t5.PRESETS["t5-v1_1-small"]
    assert (small.is_gated, small.ffn_activation) == (True, "gelu_new")
    # transformers 5 writes a v1.1 config as tied + `scale_decoder_outputs=false`: still the untied model.
    assert not t5.config_from_hf({**t5.config_to_hf(small), "tie_word_embeddings": True,
                                  "scale_decoder_outputs": False}).tie_word_embeddings
    for bad, match in ((dict(feed_forward_proj="gelu-gated"), "feed_forward_proj"),
                       (dict(relative_attention_num_buckets=7), "even number"),
                       (dict(eos_token_id=40000), "eos_token_id")):
        with pytest.raises(ValueError, match=match) as e:
            dataclasses.replace(small, **bad).validate()
        assert "\n" not in str(e.value)
    special = SpecialIds(pad=0, eos=1, unk=2, sentinels=(99, 98))
    assert small.with_vocabulary(100, special).vocab_size == 100


def test_relative_position_buckets_follow_mesh_tensorflow():
    rel = jnp.arange(-200, 201)
    enc = np.asarray(t5.relative_position_bucket(rel, bidirectional=True, num_buckets=32, max_distance=128))
    dec = np.asarray(t5.relative_position_bucket(rel, bidirectional=False, num_buckets=32, max_distance=128))
    at = lambda r: int(np.flatnonzero(np.asarray(rel) == r)[0])
    # Encoder: 16 buckets a side, 8 exact, then log-spaced to 128, then the last one of each side.
    assert [enc[at(r)] for r in (0, 1, 7, 8, 12, 127, 128, 200)] == [0, 17, 23, 24, 25, 31, 31, 31]
    assert [enc[at(r)] for r in (-1, -7, -8, -12, -127, -200)] == [1, 7, 8, 9, 15, 15]
    # Decoder: future keys share bucket 0; 16 exact past distances, then log-spaced.
    assert [dec[at(r)] for r in (5, 0, -1, -15, -16, -20, -127, -128, -200)] == [0, 0, 1, 15, 16, 17, 31, 31, 31]


def test_towers_count_encoder_decoder_and_cross_attention():
    cfg = t5.PRESETS["t5-v1_1-base"]
    encoder, decoder = flops.towers_for("t5", cfg, objectives.config_for("span_corruption"), 512)
    assert (encoder.seq_len, encoder.memory_len, encoder.lm_positions) == (512, 0, 0)
    assert (decoder.seq_len, decoder.memory_len, decoder.lm_positions) == (114, 512, 114)
    assert encoder.gated_ffn and not encoder.use_bias and encoder.norm == "rmsnorm" and not encoder.input_norm
    assert encoder.final_norm and decoder.final_norm
    # ELECTRA's flops_computation.py counts T5-11B as an encoder and a cross-attending decoder of 512 tokens each
    # (its MODEL_FLOPS row, 4.582e22 for 2048 × 1M steps): our preset's towers at those lengths give that row.
    t5_11b = dataclasses.replace(t5.PRESETS["t5-11b"], vocab_size=32000)
    towers = t5.towers(t5_11b, 512, predicted_positions=512, heads=("lm",))
    assert f"{flops.electra_script_train_flops(towers, 2048, 1e6).total:.3e}" == "4.582e+22"


# ------------------------------------------------------------------------------------------- HF parity


def _hf_config(transformers, variant):
    return transformers.T5Config(vocab_size=VOCAB, d_model=D, d_kv=KV, d_ff=FFN, num_layers=ENC_LAYERS,
                                 num_decoder_layers=DEC_LAYERS, num_heads=HEADS,
                                 relative_attention_num_buckets=BUCKETS, relative_attention_max_distance=MAX_DISTANCE,
                                 dropout_rate=0.0, attn_implementation="eager", **VARIANTS[variant])


def _randomize(torch, model, seed, untie):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every weight random, norm scales near 1, a position bias that matters
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if name.endswith("layer_norm.weight")
                    else noise if "relative_attention_bias" in name else 0.1 * noise)
        if untie:
            model.lm_head.weight = torch.nn.Parameter(0.1 * torch.randn(model.lm_head.weight.shape, generator=g))
    return model.eval()


def _inputs():
    rng = np.random.default_rng(0)
    mask = np.arange(S)[None, :] < np.array(LENGTHS)[:, None]
    tokens = np.where(mask, rng.integers(3, VOCAB, (len(LENGTHS), S)), 0)
    decoder = np.concatenate([np.zeros((len(LENGTHS), 1)), rng.integers(3, VOCAB, (len(LENGTHS), T - 1))], 1)
    return tokens.astype(np.int64), decoder.astype(np.int64), mask


_FORWARD = {}


def _ours(config, params, tokens, decoder, mask):
    """Our teacher-forced forward, jitted once per config."""
    if config not in _FORWARD:
        model = models.build("t5", config)
        _FORWARD[config] = jax.jit(lambda p, x, y, m: model.apply({"params": p}, x, decoder_tokens_BT=y, mask_BT=m))
    out = _FORWARD[config](params, jnp.asarray(tokens, jnp.int32), jnp.asarray(decoder, jnp.int32), jnp.asarray(mask))
    return jax.tree.map(np.asarray, out)


def _theirs(torch, model, tokens, decoder, mask):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)),
                    decoder_input_ids=torch.tensor(decoder))
    return out.encoder_last_hidden_state.numpy(), out.logits.numpy()


def _check(ours, theirs):
    encoded, logits = theirs
    np.testing.assert_allclose(ours.hidden_BTD, encoded, **MODEL_TOL)
    np.testing.assert_allclose(ours.logits_BTV, logits, **MODEL_TOL)


@pytest.fixture(scope="module")
def hf_models(require, tmp_path_factory):
    """variant → (a random HF model, the directory `save_pretrained` wrote it to)."""
    torch = require("torch")
    transformers = require("transformers")
    out = {}
    for i, variant in enumerate(VARIANTS):
        untie = not VARIANTS[variant]["tie_word_embeddings"]
        model = _randomize(torch, transformers.T5ForConditionalGeneration(_hf_config(transformers, variant)), i, untie)
        assert (model.lm_head.weight is model.shared.weight) != untie
        path = tmp_path_factory.mktemp(f"t5-{variant}")
        model.save_pretrained(path)
        out[variant] = (model, path)
    return torch, transformers, out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_from_transformers_matches(hf_models, variant):
    torch, _, built = hf_models
    model, path = built[variant]
    loaded = load_hf_with_report(path)
    assert loaded.family == "t5" and loaded.report.initialized == () and loaded.report.unexpected == ()
    cfg = loaded.config
    assert (cfg.d_model, cfg.d_kv, cfg.num_layers, cfg.num_decoder_layers) == (D, KV, ENC_LAYERS, DEC_LAYERS)
    assert cfg.tie_word_embeddings == VARIANTS[variant]["tie_word_embeddings"]
    assert ("lm_head" in loaded.params) != cfg.tie_word_embeddings
    tokens, decoder, mask = _inputs()
    _check(_ours(cfg, loaded.params, tokens, decoder, mask), _theirs(torch, model, tokens, decoder, mask))
    if variant == "v1.1":
        # The published v1.1 config.json spelling (`tie_word_embeddings: false`) reads as the same model.
        hf = json.loads((path / "config.json").read_text())
        hf.pop("scale_decoder_outputs", None)
        (path / "config.json").write_text(json.dumps({**hf, "tie_word_embeddings": False}))
        assert read_hf_config(path) == ("t5", cfg)


def test_untied_head_missing_from_a_checkpoint_takes_the_embedding(hf_models, tmp_path):
    """transformers 5 ties a v1.1 head to the embedding when the checkpoint has no `lm_head.weight` of its own (what
    its `save_pretrained` writes for a tied model): our untied head then starts as that embedding."""
    from safetensors.numpy import load_file, save_file

    _, _, built = hf_models
    shutil.copytree(built["v1.1"][1], tmp_path / "hf")
    tensors = load_file(tmp_path / "hf" / "model.safetensors")
    del tensors["lm_head.weight"]
    save_file(tensors, tmp_path / "hf" / "model.safetensors")
    loaded = load_hf_with_report(tmp_path / "hf")
    assert loaded.report.initialized == () and not loaded.config.tie_word_embeddings
    np.testing.assert_array_equal(loaded.params["lm_head"]["kernel"], tensors["shared.weight"].T)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ours_to_transformers_loads_cleanly_and_matches(hf_models, variant, tmp_path):
    torch, transformers, _ = hf_models
    config = t5.config_from_hf(_hf_config(transformers, variant).to_dict())
    rng = np.random.default_rng(4)
    flat = {path: (1 if path.endswith("norm/scale") else 0) + 0.1 * rng.standard_normal(shape).astype(np.float32)
            for path, shape in state_dict.param_shapes("t5", config).items()}
    params = traverse_util.unflatten_dict(flat, sep="/")
    save_hf("t5", config, params, tmp_path)
    hf, info = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True,
                                                                       attn_implementation="eager")
    assert {k: v for k, v in info.items() if v} == {}
    assert (hf.lm_head.weight is hf.shared.weight) == config.tie_word_embeddings
    tokens, decoder, mask = _inputs()
    _check(_ours(config, params, tokens, decoder, mask), _theirs(torch, hf.eval(), tokens, decoder, mask))


def test_incremental_decoding_with_caches_equals_teacher_forcing(hf_models):
    """Encoder once; the decoder over the target positions in pieces (2, then 1 at a time) with the self-attention
    KV cache, the cross-attention cache and the position bias offset by the positions already decoded (v1.1: the
    untied head; the caches do not depend on the variant)."""
    _, _, built = hf_models
    loaded = load_hf_with_report(built["v1.1"][1])
    cfg, params = loaded.config, loaded.params
    tokens, decoder, mask = (jnp.asarray(a) for a in _inputs())
    full = _ours(cfg, params, tokens, decoder, mask).logits_BTV
    model = t5.T5ForConditionalGeneration(cfg, decode=True)
    encoded = jax.jit(lambda p, x, m: model.apply({"params": p}, x, mask_BT=m, method="encode"))(params, tokens, mask)

    @jax.jit
    def step(p, cache, ids, enc, m):
        out, state = model.apply({"params": p, "cache": cache}, ids, enc, encoder_mask_BS=m, method="run_decoder",
                                 mutable=["cache"])
        return out.logits_BTV, state["cache"]

    _, state = jax.jit(lambda p, enc, m: model.apply({"params": p}, jnp.zeros((len(LENGTHS), T), jnp.int32), enc,
                                                     encoder_mask_BS=m, method="run_decoder", mutable=["cache"]))(
        params, encoded, mask)
    cache, pieces, i = state["cache"], [], 0
    for n in [2] + [1] * (T - 2):
        logits, cache = step(params, cache, decoder[:, i:i + n].astype(jnp.int32), encoded, mask)
        pieces.append(np.asarray(logits))
        i += n
    np.testing.assert_allclose(np.concatenate(pieces, 1), full, rtol=1e-5, atol=1e-5)



# ------------------------------------------------------------------------------------- generation vs HF

GEN_M = 8  # new tokens


def _hf_t5_generate(torch, model, tokens, mask, eos, **kwargs):
    """transformers' `generate` (decoder start = pad = 0, as T5's); the generated tokens after the start token."""
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor(tokens, dtype=torch.long),
                             attention_mask=torch.tensor(mask.astype(np.int64)), max_new_tokens=GEN_M,
                             do_sample=False, eos_token_id=eos, pad_token_id=0, decoder_start_token_id=0, **kwargs)
    assert np.all(out[:, 0].numpy() == 0)
    return out[:, 1:].numpy()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_greedy_and_beam_search_equal_transformers_generate(hf_models, variant):
    """The shared decoding loop (`llm_jax.generate`) over T5's decoder steps: the encoder once on left-padded inputs
    of different lengths, the decoder from the start token; greedy and 4 beams equal transformers token for token.
    The stop token is one that transformers' free beam search produces in row 1 at step 3, so that (v1.1) rows end
    at different steps."""
    from llm_jax import generate as gen

    torch, _, built = hf_models
    model, path = built[variant]
    family, cfg, params = load_hf(path)
    decoder = gen.decoder_for(family, cfg)
    assert decoder.stop_token_ids == (cfg.eos_token_id,) == (1,) and models.check_family(t5) == []
    tokens, _, mask = _inputs()
    prompts = [tokens[row, :n].tolist() for row, n in enumerate(LENGTHS)]
    ids, ids_mask = gen.left_pad(prompts, 0)
    eos = int(_hf_t5_generate(torch, model, ids, ids_mask, None, num_beams=4)[1, 3])
    lengths = {}
    for beams in (1, 4):
        ours = gen.generate(decoder, params, prompts, gen.GenerationConfig(
            max_new_tokens=GEN_M, num_beams=beams, stop_token_ids=(eos,), pad_token_id=0))
        theirs = _hf_t5_generate(torch, model, ids, ids_mask, eos, num_beams=beams)
        for row, n in enumerate(ours.lengths_B):
            assert ours.tokens_BN[row, :n].tolist() == theirs[row, :n].tolist(), (beams, row, ours.tokens_BN, theirs)
            # transformers fills an ended row with the pad id; its beam search fills with `pad_token_id or eos`,
            # so with T5's pad 0, with eos.
            assert np.all(theirs[row, n:] == (0 if beams == 1 else eos)), (beams, row, n, theirs[row])
        assert theirs.shape[1] == max(ours.lengths_B)
        lengths[beams] = ours.lengths_B.tolist()
    if variant == "v1.1":
        # Rows end at different steps in both searches, and the text varies (not one repeated token). The random
        # tied v1.0 model repeats its first token (the fed-back embedding dominates), so there only parity counts.
        assert all(len(set(lengths[b])) > 1 for b in (1, 4)), lengths
        assert max(len(set(s)) for s in ours.sequences()) > 3


def test_sequence_head_matches_t5_for_sequence_classification(require):
    """The trunk under a classification head reads the decoder (inputs shifted right) at each row's last eos, through
    HF's `T5ClassificationHead` (dense → tanh → out_proj), as `T5ForSequenceClassification` does."""
    from llm_jax.models import heads

    torch = require("torch")
    transformers = require("transformers")
    hf_cfg = _hf_config(transformers, "v1.0")
    hf_cfg.num_labels, hf_cfg.decoder_start_token_id = 3, 0  # as published configs have it
    hf = _randomize(torch, transformers.T5ForSequenceClassification(hf_cfg), 5, untie=False)
    # Its checkpoint names the trunk `transformer.shared.weight`, …: read under our names (HF_BASE_PREFIX).
    tensors = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    assert "transformer.shared.weight" in tensors and "shared.weight" not in tensors
    cfg = t5.config_from_hf(hf.config.to_dict())
    trunk, report = state_dict.from_hf_state_dict("t5", cfg, tensors)
    assert sorted(report.unexpected) == sorted(f"classification_head.{n}.{w}" for n in ("dense", "out_proj")
                                               for w in ("weight", "bias"))
    linear = lambda name: {"kernel": tensors[f"{name}.weight"].T, "bias": tensors[f"{name}.bias"]}
    params = {"transformer": trunk["transformer"],
              "classification_head": {"dense": linear("classification_head.dense"),
                                      "out_proj": linear("classification_head.out_proj")}}
    tokens, _, mask = _inputs()
    tokens[np.arange(len(LENGTHS)), np.array(LENGTHS) - 1] = cfg.eos_token_id  # one eos per row, as HF requires
    out = heads.build("t5", cfg, "classification", num_labels=3).apply(
        {"params": params}, jnp.asarray(tokens, jnp.int32), mask_BT=jnp.asarray(mask))
    with torch.no_grad():
        theirs = hf.eval()(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64))).logits
    np.testing.assert_allclose(out.logits_BC, theirs.numpy(), **MODEL_TOL)


# -------------------------------------------------------------------------------------------- the objective

SPECIAL = SpecialIds(pad=0, eos=1, unk=2, sentinels=tuple(range(99, 89, -1)))


def test_noise_mask_has_t5s_counts_and_alternates():
    rng = np.random.default_rng(0)
    for n in (2, 9, 10, 37, 141, 568):
        noise, spans = sc.span_counts(n, 0.15, 3.0)
        for _ in range(5):
            mask = sc.random_spans_noise_mask(n, 0.15, 3.0, rng)
            assert mask.sum() == noise and not mask[0] and mask[-1]
            assert np.sum(mask[1:] & ~mask[:-1]) == spans  # noise spans, each after a non-noise one
    # Every split is equally likely: at n = 568 the 85 noise tokens make 28 spans of mean length ≈ 3.
    lengths = np.diff(np.flatnonzero(np.diff(np.r_[0, sc.random_spans_noise_mask(568, 0.15, 3.0, rng), 0])))[::2]
    assert lengths.sum() == 85 and len(lengths) == 28


def test_corrupted_inputs_and_targets_are_t5s():
    tokens = np.arange(10, 22, dtype=np.int32)  # 10 … 21
    noise = np.zeros(12, bool)
    noise[[2, 3, 7, 10, 11]] = True
    x, y = sc.corrupt_spans(tokens, noise, np.asarray(SPECIAL.sentinels), SPECIAL.eos)
    np.testing.assert_array_equal(x, [10, 11, 99, 14, 15, 16, 98, 18, 19, 97, 1])
    np.testing.assert_array_equal(y, [99, 12, 13, 98, 17, 97, 20, 21, 1])


def test_lengths_follow_random_spans_helper():
    # t5.data.preprocessors.random_spans_helper(512 / 1024, 0.15, 3, 1, 1): 568 → 512 + 114, 1137 → 1024 + 229.
    assert sc.span_lengths(512) == sc.SpanLengths(tokens=568, inputs=512, targets=114, spans=28)
    assert sc.span_lengths(1024) == sc.SpanLengths(tokens=1137, inputs=1024, targets=229, spans=57)
    assert all(sc.span_lengths(n).inputs == n for n in range(8, 600))


def test_prepare_corrupts_dynamically_and_reconstructs_the_text():
    objective = objectives.make_objective(objectives.config_for("span_corruption"), SPECIAL, 100)
    docs = [[np.arange(3, 40, dtype=np.int32)], [np.arange(40, 85, dtype=np.int32), np.arange(3, 20, dtype=np.int32)]]
    lengths = objective.lengths(40)  # 44 raw tokens: 7 noise tokens in 2 spans, placed at random
    rows = objective.build_examples(docs, 40, seed=0)
    assert rows["tokens"].shape == (-(-99 // lengths.tokens), lengths.tokens) == (3, 44)
    rows.update(epoch=np.zeros(len(rows["tokens"]), int), example_index=np.arange(len(rows["tokens"])))
    batch = objective.prepare(rows, seed=0)
    assert batch["inputs"].shape[1] == 40 and batch["targets"].shape[1] == lengths.targets == 10
    assert {k: v.shape for k, v in objective.dummy_batch(len(rows["tokens"]), 40).items()} == \
        {k: v.shape for k, v in batch.items()}
    sentinel = set(SPECIAL.sentinels)
    for r in range(len(rows["tokens"])):
        x = batch["inputs"][r][batch["mask"][r]]
        y = batch["targets"][r][batch["target_weights"][r] > 0]
        assert x[-1] == y[-1] == SPECIAL.eos
        # Fill each sentinel of the inputs with what follows the same sentinel in the targets: the original chunk.
        spans, current = {}, None
        for tok in y[:-1]:
            current = tok if tok in sentinel else current
            if tok not in sentinel:
                spans.setdefault(current, []).append(tok)
        text = [t for tok in x[:-1] for t in (spans.get(tok, []) if tok in sentinel else [tok])]
        np.testing.assert_array_equal(text, rows["tokens"][r][rows["mask"][r]])
    np.testing.assert_array_equal(batch["decoder_inputs"][:, 1:], batch["targets"][:, :-1])
    assert np.all(batch["decoder_inputs"][:, 0] == SPECIAL.pad)
    again = objective.prepare({**rows, "epoch": np.ones_like(rows["epoch"])}, seed=0)
    assert not np.array_equal(again["inputs"], batch["inputs"])  # a fresh corruption every epoch
    with pytest.raises(ValueError, match="only 10 sentinels") as e:
        objective.build_examples(docs, 512, seed=0)
    assert "\n" not in str(e.value)


class _DecoderEmbedding(nn.Module):
    """Logits from the decoder inputs alone: the loss's normalisation under test without a T5 to compile (the
    sharding tests train the real model)."""

    @nn.compact
    def __call__(self, tokens_BT, *, decoder_tokens_BT, mask_BT, deterministic):
        del mask_BT, deterministic
        return t5.Output(hidden_BTD=tokens_BT, logits_BTV=nn.Embed(100, 100)(decoder_tokens_BT))


def test_loss_denominators_make_micro_batches_add_up():
    objective = objectives.make_objective(objectives.config_for("span_corruption"), SPECIAL, 100)
    rng = np.random.default_rng(1)
    rows = {"tokens": rng.integers(3, 90, (4, 30)).astype(np.int32),
            "mask": np.arange(30)[None] < np.array([[30], [30], [12], [21]]), "epoch": np.zeros(4, int),
            "example_index": np.arange(4)}
    batch = objective.prepare(rows, seed=0)
    model = _DecoderEmbedding()
    args, kwargs = objective.init_inputs(batch)
    params = model.init(jax.random.key(0), *args, **kwargs, deterministic=True)["params"]
    loss_fn = objective.make_loss(model)
    den = objective.loss_denominators(batch)
    assert float(den["targets"]) == batch["target_weights"].sum() < batch["target_weights"].size  # short rows
    grad = jax.grad(lambda p, b, d: loss_fn(p, b, jax.random.key(0), denominators=d, deterministic=True)[0])
    full, (m, _) = loss_fn(params, batch, jax.random.key(0), deterministic=True)
    halves = [{k: v[i::2] for k, v in batch.items()} for i in (0, 1)]
    parts = [loss_fn(params, h, jax.random.key(0), denominators=den, deterministic=True)[0] for h in halves]
    np.testing.assert_allclose(float(parts[0] + parts[1]), float(full), rtol=1e-6)
    np.testing.assert_allclose(jax.tree.leaves(grad(params, halves[0], den))[0]
                               + jax.tree.leaves(grad(params, halves[1], den))[0],
                               jax.tree.leaves(grad(params, batch, den))[0], rtol=1e-5, atol=1e-7)
    assert 0.0 <= float(m["accuracy"]) <= 1.0


def test_recipe_is_adafactor_with_rsqrt_and_adamw_is_selectable():
    from llm_jax.config import from_dict, load_config_file

    small = from_dict(load_config_file(str(ROOT / "configs" / "t5.py:size=v1_1-small")))
    assert (small.optim.name, small.optim.schedule, small.optim.learning_rate, small.optim.warmup_steps) == \
        ("adafactor", "rsqrt", 0.01, 10_000)
    assert (small.optim.weight_decay, small.optim.clip_norm, small.data.seq_len, small.data.vocab_size) == \
        (0.0, 0.0, 512, 32100)
    assert small.objective == objectives.config_for("span_corruption") and not small.model.tie_word_embeddings
    adamw = from_dict(load_config_file(str(ROOT / "configs" / "t5.py:size=tiny,optim=adamw")))
    assert (adamw.optim.name, adamw.optim.schedule) == ("adamw", "linear")
    with pytest.raises(ValueError, match="optim='sgd'"):
        load_config_file(str(ROOT / "configs" / "t5.py:size=tiny,optim=sgd"))


# ------------------------------------------------------------------------------------ CLI pretrain + export


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("t5") / "run"
    rc = cli.main(["pretrain", "--config", str(ROOT / "configs" / "t5.py:size=tiny"), "--workdir", str(run),
                   "--config.data.max_documents=1000", "--config.data.max_eval_documents=40",
                   "--config.data.vocab_size=1100", "--config.data.seq_len=64", "--config.train.steps=30",
                   "--config.train.batch_size=16", "--config.train.progress=False", "--config.train.log_every=1",
                   "--config.train.eval_every=30", "--config.train.eval_batches=2",
                   "--config.train.checkpoint_every=30", "--config.optim.warmup_steps=10"])
    assert rc == 0
    return run


def test_cli_pretraining_lowers_the_loss(cli_run):
    rows = [json.loads(line) for line in (cli_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "loss" in r]
    first, last = np.mean([r["loss"] for r in train[:5]]), np.mean([r["loss"] for r in train[-5:]])
    assert last < first - 1.0, (first, last)
    assert any("eval_loss" in r for r in rows)
    config = json.loads((cli_run / "config.json").read_text())
    assert (config["optim"]["name"], config["optim"]["schedule"]) == ("adafactor", "rsqrt")
    assert config["model"]["vocab_size"] == 1100


def test_convert_both_ways_and_the_tokenizer_in_transformers(cli_run, tmp_path, require):
    torch = require("torch")
    transformers = require("transformers")
    assert cli.main(["convert", "--to-hf", str(cli_run), "--out", str(tmp_path / "hf")]) == 0
    hf, info = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}, info
    # The SentencePiece vocabulary: <pad>=0 </s>=1 <unk>=2, no bos, <extra_id_0> the highest id; transformers'
    # T5 tokenizer reads the same ids from spiece.model alone.
    shutil.copytree(tmp_path / "hf", tmp_path / "spm")
    (tmp_path / "spm" / "tokenizer.json").unlink()
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "spm")
    assert type(tok).__name__ == "T5Tokenizer"
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.bos_token_id) == (0, 1, 2, None)
    assert tok.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_99>"]) == [1099, 1000] and len(tok) == 1100
    ids = tok("The <extra_id_0> walks in <extra_id_1> park", return_tensors="pt").input_ids
    assert ids[0, -1] == 1 and 1099 in ids[0] and 1098 in ids[0]
    with torch.no_grad():
        logits = hf.eval()(input_ids=ids, decoder_input_ids=torch.tensor([[0, 1099]])).logits
    loaded = load_hf_with_report(tmp_path / "hf")
    ours = models.build("t5", loaded.config).apply({"params": loaded.params}, jnp.asarray(ids.numpy(), jnp.int32),
                                                   decoder_tokens_BT=jnp.asarray([[0, 1099]], jnp.int32))
    np.testing.assert_allclose(np.asarray(ours.logits_BTV), logits.numpy(), **MODEL_TOL)
    assert cli.main(["convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "ours")]) == 0


def test_describe_prints_the_untied_v1_1_count(capsys):
    assert cli.main(["describe", "t5-v1_1-small"]) == 0
    assert "parameters: 76961152" in capsys.readouterr().out


def test_cli_generates_from_an_exported_t5(cli_run, tmp_path, capsys, require):
    """`llm-jax generate` on a Hugging Face T5 directory (the pretrained run exported with its tokenizer): the prompt
    is the encoder input (with the tokenizer's final `</s>`), the output the decoder's greedy tokens, which equal
    transformers' `generate` on the same directory."""
    torch, transformers = require("torch"), require("transformers")
    assert cli.main(["convert", "--to-hf", str(cli_run), "--out", str(tmp_path / "hf")]) == 0
    capsys.readouterr()
    prompts = ("The cat <extra_id_0> the mat.", "In the beginning")
    argv = ["generate", "--model", str(tmp_path / "hf"), "--max-new-tokens", "6", "--json"]
    assert cli.main(argv + [a for p in prompts for a in ("--prompt", p)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == len(prompts)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    for row, prompt in zip(rows, prompts):
        assert set(row) == {"prompt_ids", "output_ids", "text"}
        assert row["prompt_ids"] == tok(prompt).input_ids and row["prompt_ids"][-1] == 1  # ends with </s>
        assert 1 <= len(row["output_ids"]) <= 6 and row["text"] == tok.decode(row["output_ids"],
                                                                              skip_special_tokens=True)
        with torch.no_grad():
            theirs = hf.generate(torch.tensor([row["prompt_ids"]]), max_new_tokens=6, do_sample=False)[0, 1:]
        assert row["output_ids"] == theirs[:len(row["output_ids"])].tolist()


# ------------------------------------------------------------------------------- CLI text-to-text fine-tuning


def _finetune(model, workdir, *overrides):
    recipe = f"{ROOT / 'configs' / 'finetune.py'}:model={model},task=wordnet-supersense"
    return cli.main(["finetune", "--config", recipe,
                     "--workdir", str(workdir), "--config.train.progress=False", "--config.data.seq_len=32",
                     "--config.data.train_examples=200", "--config.data.eval_batch_size=500",
                     "--config.train.log_every=5", *overrides])


@pytest.fixture(scope="module")
def text_to_text_run(cli_run, tmp_path_factory):
    """`llm-jax finetune` from the CLI pretraining run: text to text on wordnet-supersense (a few steps)."""
    workdir = tmp_path_factory.mktemp("t5-ft") / "run"
    assert _finetune(cli_run, workdir, "--config.train.steps=20", "--config.train.eval_every=20",
                     "--config.train.eval_examples=100", "--config.optim.learning_rate=3e-3") == 0
    return workdir


def test_cli_finetunes_a_pretraining_run_text_to_text(text_to_text_run, capsys):
    """Teacher forcing on `supersense definition: …` → `noun.food`, evaluation by greedy decoding: results.json has
    the task's metrics, the majority baseline and the number of decoded texts that were no label word, and each
    prediction row says what was decoded and what label it maps to."""
    results = json.loads((text_to_text_run / "results.json").read_text())
    summary = json.loads((text_to_text_run / "summary.json").read_text())
    config = json.loads((text_to_text_run / "config.json").read_text())
    assert config["data"]["text_to_text"] and config["family"] == "t5"
    # T5's own fine-tuning recipe (§3.1.2): Adafactor at a constant 0.001, no warmup, no decay, no global clipping.
    # (The run itself overrides the rate: 3e-3 for a 20-step test.)
    assert {k: config["optim"][k] for k in ("name", "schedule", "weight_decay", "clip_norm")} == {
        "name": "adafactor", "schedule": "constant", "weight_decay": 0.0, "clip_norm": 0.0}
    assert config["train"]["warmup_ratio"] == 0.0
    recipe = load_config_file(f"finetune:model={config['source']},task=wordnet-supersense")
    assert recipe["optim"]["learning_rate"] == 1e-3
    assert summary["text_to_text"]["input_template"] == "supersense definition: {text_a}"
    assert summary["text_to_text"]["targets"][6] == "noun.food" and summary["text_to_text"]["num_beams"] == 1
    rows = [json.loads(line) for line in (text_to_text_run / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 2000
    for split in ("validation", "test"):
        assert set(results[split]) == {"accuracy", "macro_f1", "non_label_outputs", "majority_baseline"}
        assert results[split]["majority_baseline"] == pytest.approx(0.1)
        assert isinstance(results[split]["non_label_outputs"], int)
    assert results["test"]["non_label_outputs"] == sum(not r["is_label"] for r in rows)
    words = summary["text_to_text"]["targets"]
    for r in rows:
        assert set(r) >= {"idx", "prediction", "prediction_text", "is_label", "label"}
        assert r["is_label"] == (r["prediction_text"] in words)  # this vocabulary writes the words back as given
        assert r["prediction"] == (words.index(r["prediction_text"]) if r["is_label"] else -1)
    assert results["test"]["accuracy"] == pytest.approx(np.mean([r["prediction"] == r["label"] for r in rows]))
    train = [json.loads(line) for line in (text_to_text_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in train if "loss" in r]
    assert losses[-1] < losses[0]  # teacher forcing on the target words learns them
    assert any("eval_non_label_outputs" in r for r in train)


def test_cli_finetunes_a_hugging_face_t5_with_beam_search(cli_run, tmp_path, capsys):
    assert cli.main(["convert", "--to-hf", str(cli_run), "--out", str(tmp_path / "hf")]) == 0
    capsys.readouterr()
    # Beam search decodes the final scores of 100 examples per split (`train.final_eval_examples`): the whole
    # splits (2000 each) are what `text_to_text_run` decodes, greedily.
    assert _finetune(tmp_path / "hf", tmp_path / "ft", "--config.train.steps=2", "--config.data.num_beams=2",
                     "--config.train.final_eval_examples=100") == 0
    out = capsys.readouterr().out
    assert "text to text: targets of" in out and "beam search (2 beams)" in out and "non_label_outputs" in out
    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert 0 <= results["test"]["non_label_outputs"] <= 100 and "accuracy" in results["test"]
    for split in ("validation", "test"):
        rows = [json.loads(line) for line in (tmp_path / "ft" / "predictions" / f"{split}.jsonl").open()]
        assert len(rows) == 100 and len({r["idx"] for r in rows}) == 100
    # Zero-shot cloze scores a masked LM; text to text refuses it before anything compiles.
    assert _finetune(tmp_path / "hf", tmp_path / "zero", "--config.data.train_examples=0") == 1
    assert "text to text needs training examples" in capsys.readouterr().err

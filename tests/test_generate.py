"""Generation (`llm_jax.generate`): greedy and beam search equal transformers' `generate` token for token on a random
GPT-2 with batched prompts of different lengths; cached decoding equals re-running the full causal pass at every
step (banded GPT-3 layers too); the sampling filters equal transformers' warpers; the CLI generates from a pretrained
run. Each search compiles once (the knobs — temperature, k, p, length penalty, early stopping — are arrays)."""

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from llm_jax import cli, models
from llm_jax import generate as gen
from llm_jax.interop import load_hf, state_dict
from llm_jax.interop.native import load_pretrained
from llm_jax.models import gpt

ROOT = pathlib.Path(__file__).resolve().parents[1]
M = 12  # new tokens
LENGTHS = (7, 3, 5)  # prompts of different lengths: left-padded


def _prompts(vocab: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, vocab, n).tolist() for n in LENGTHS]


# ---------------------------------------------------------------------------------------- against HF


@pytest.fixture(scope="module")
def hf_gpt2(require, tmp_path_factory):
    """A random GPT2LMHeadModel (eager attention) and the same weights in ours. Position embeddings ~ N(0, 1), the
    rest ~ N(0, 0.1²): the position then steers the next token, so a random model's greedy text varies along the
    sequence instead of repeating one token, and a wrong position of a left-padded row shows."""
    torch, transformers = require("torch"), require("transformers")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=301, n_embd=36, n_layer=3, n_head=3, n_inner=52, n_positions=40, attn_implementation="eager"))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            noise = (1.0 if "wpe" in name else 0.1) * torch.randn(p.shape, generator=g)
            p.copy_(1 + noise if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else noise)
    hf.eval()
    path = tmp_path_factory.mktemp("hf_gpt2")
    hf.save_pretrained(path)
    family, config, params = load_hf(path)
    return torch, hf, gen.decoder_for(family, config), params


def _hf_generate(torch, hf, prompts, eos, **kwargs):
    """transformers' `generate` on left-padded prompts with an attention mask; the new tokens `[B, ≤ M]`."""
    t = max(map(len, prompts))
    ids, mask = gen.left_pad(prompts, eos)
    with torch.no_grad():
        out = hf.generate(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask.astype(int)),
                          max_new_tokens=M, eos_token_id=eos, pad_token_id=eos, **kwargs)
    return out[:, t:].numpy()


def _check_rows(ours: gen.GenerateOutput, theirs: np.ndarray, eos: int) -> None:
    """Each row's tokens equal up to its length, after which transformers pads with eos."""
    for row, n in enumerate(ours.lengths_B):
        assert ours.tokens_BN[row, :n].tolist() == theirs[row, :n].tolist(), (row, ours.tokens_BN[row], theirs[row])
        assert np.all(theirs[row, n:] == eos), (row, n, theirs[row])
    assert theirs.shape[1] == max(ours.lengths_B)  # transformers stops when every row has ended


@pytest.fixture(scope="module")
def eos(hf_gpt2):
    """An end-of-text id that rows reach at different steps: a token transformers' greedy text of row 1 produces at
    step 4 (found without a stop token)."""
    torch, hf, _, _ = hf_gpt2
    with torch.no_grad():
        ids, mask = gen.left_pad(_prompts(301), 0)
        free = hf.generate(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask.astype(int)),
                           max_new_tokens=M, do_sample=False, pad_token_id=0, eos_token_id=None)
    return int(free[1, ids.shape[1] + 4])


def test_greedy_equals_transformers_with_left_padded_prompts(hf_gpt2, eos):
    torch, hf, decoder, params = hf_gpt2
    prompts = _prompts(301)
    ours = gen.generate(decoder, params, prompts, gen.GenerationConfig(max_new_tokens=M, stop_token_ids=(eos,)))
    theirs = _hf_generate(torch, hf, prompts, eos, do_sample=False)
    _check_rows(ours, theirs, eos)
    assert ours.lengths_B[1] <= 5 and len(set(ours.lengths_B.tolist())) > 1  # rows end at different steps
    assert max(len(set(s)) for s in ours.sequences()) > 3  # a varied text, not one repeated token


@pytest.mark.parametrize("length_penalty,early_stopping", [(1.0, False), (2.0, "never"), (2.0, True), (0.0, True),
                                                           (-1.0, False)])
def test_beam_search_equals_transformers(hf_gpt2, eos, length_penalty, early_stopping):
    """num_beams=4: transformers' defaults (length_penalty 1, early_stopping False) and the other modes, all from
    one compilation."""
    torch, hf, decoder, params = hf_gpt2
    prompts = _prompts(301)
    config = gen.GenerationConfig(max_new_tokens=M, num_beams=4, length_penalty=length_penalty,
                                  early_stopping=early_stopping, stop_token_ids=(eos,))
    ours = gen.generate(decoder, params, prompts, config)
    theirs = _hf_generate(torch, hf, prompts, eos, do_sample=False, num_beams=4, length_penalty=length_penalty,
                          early_stopping=early_stopping)
    _check_rows(ours, theirs, eos)
    if (length_penalty, early_stopping) == (1.0, False):
        assert sorted(ours.lengths_B.tolist()) == [5, M, M]  # one hypothesis ends with eos, two run to the limit
        greedy = gen.generate(decoder, params, prompts, gen.GenerationConfig(max_new_tokens=M, stop_token_ids=(eos,)))
        assert greedy.sequences() != ours.sequences()  # the beams found other texts than greedy


def test_sampling_filters_equal_transformers_warpers(require):
    torch, transformers = require("torch"), require("transformers")
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 50)).astype(np.float32) * 3
    for temperature, k, p in [(0.7, 5, 0.9), (1.0, 1, 1.0), (1.3, 50, 0.3), (1.0, 20, 0.05), (0.5, 10, 0.999)]:
        warpers = transformers.LogitsProcessorList([
            transformers.TemperatureLogitsWarper(temperature), transformers.TopKLogitsWarper(k),
            transformers.TopPLogitsWarper(p)])
        theirs = warpers(None, torch.tensor(logits)).numpy()
        ours = np.asarray(gen.warp_logits(jnp.asarray(logits), temperature, k, p))
        np.testing.assert_array_equal(np.isinf(ours), np.isinf(theirs))
        np.testing.assert_allclose(ours[~np.isinf(ours)], theirs[~np.isinf(theirs)], rtol=1e-6)
    np.testing.assert_array_equal(gen.top_k_filter(jnp.asarray(logits), 0), logits)  # 0 = no filter
    np.testing.assert_array_equal(gen.top_p_filter(jnp.asarray(logits), 1.0), logits)


def _full_pass_reference(model, params, prompts, config):
    """Greedy decoding *without* a cache: the full causal pass over the prompt and everything generated so far,
    re-run for every new token (rows right-padded to one width, so it compiles once: causal attention never lets a
    real token see a later pad)."""
    full = jax.jit(lambda p, x, pos, m: model.apply({"params": p}, x, positions_BT=pos, mask_BT=m).logits_BTV)
    tokens, mask = gen.left_pad(prompts, config.pad_id)
    b, t = tokens.shape
    seq = np.zeros((b, t + config.max_new_tokens), np.int32)
    real = np.zeros(seq.shape, bool)
    seq[:, :t], real[:, :t] = tokens, mask
    out, ended = [], np.zeros(b, bool)
    for i in range(config.max_new_tokens):
        pos = gpt.positions_from_mask(jnp.asarray(real))
        logits = np.asarray(full(params, jnp.asarray(seq), pos, jnp.asarray(real)))[:, t + i - 1]
        tok = np.where(ended, config.pad_id, logits.argmax(-1))
        out.append(tok)
        ended |= np.isin(tok, config.stops)
        seq[:, t + i], real[:, t + i] = tok, True
        if ended.all():
            break
    return np.stack(out, 1)


def test_greedy_with_the_cache_equals_the_full_pass_at_every_step():
    """A GPT-3-shaped model (odd layers banded, w = 3 < the sequence) decoding left-padded prompts."""
    cfg = models.make_config("gpt", vocab_size=97, hidden_size=32, num_layers=4, num_heads=2, intermediate_size=64,
                             max_position_embeddings=24, attention_window=3, scan_unroll=False)
    rng = np.random.default_rng(3)
    flat = {k: (1.0 if "position" in k else 0.1) * rng.standard_normal(s).astype(np.float32)
            for k, s in state_dict.param_shapes("gpt", cfg).items()}
    params = traverse_util.unflatten_dict(flat, sep="/")
    decoder = gen.decoder_for("gpt", cfg)
    prompts = _prompts(cfg.vocab_size, seed=4)
    config = gen.GenerationConfig(max_new_tokens=M, stop_token_ids=())
    ours = gen.generate(decoder, params, prompts, config)
    want = _full_pass_reference(models.build("gpt", cfg), params, prompts, config)
    np.testing.assert_array_equal(ours.tokens_BN, want)
    assert ours.lengths_B.tolist() == [M] * len(LENGTHS)
    # The last token is never fed back: 7 + 18 new tokens need 24 positions and fit; 19 need 25.
    with pytest.raises(ValueError, match="A 7-token prompt and max_new_tokens=19 need 25 positions; the model has 24"):
        gen.generate(decoder, params, prompts, dataclasses.replace(config, max_new_tokens=19))


def test_sampling(hf_gpt2, eos):
    """One compilation: top-k 1 is greedy, a tiny nucleus is greedy, a seed repeats its draws, seeds differ, and
    every drawn token was allowed by top-k (checked against the full pass's logits)."""
    _, _, decoder, params = hf_gpt2
    prompts = _prompts(301)
    greedy = gen.generate(decoder, params, prompts, gen.GenerationConfig(max_new_tokens=M, stop_token_ids=(eos,)))
    sample = gen.GenerationConfig(max_new_tokens=M, do_sample=True, top_k=1, top_p=0.5, stop_token_ids=(eos,))
    assert gen.generate(decoder, params, prompts, sample, seed=3).sequences() == greedy.sequences()
    tiny_nucleus = dataclasses.replace(sample, top_k=301, top_p=1e-6, temperature=2.0)
    assert gen.generate(decoder, params, prompts, tiny_nucleus, seed=4).sequences() == greedy.sequences()
    wide = dataclasses.replace(sample, top_k=301, top_p=0.999, temperature=3.0)
    draws = [gen.generate(decoder, params, prompts, wide, seed=s).sequences() for s in (0, 0, 1)]
    assert draws[0] == draws[1] and draws[0] != draws[2]
    # Each drawn token is among the 3 most likely at its step (the full pass over prompt + draws gives the logits).
    top3 = dataclasses.replace(sample, top_k=3, top_p=0.999, temperature=1.5)
    drawn = gen.generate(decoder, params, prompts, top3, seed=5).sequences()
    model = models.build("gpt", decoder.cfg)
    tokens, mask = gen.left_pad([p + d for p, d in zip(prompts, drawn)], 0)
    logits = np.asarray(model.apply({"params": params}, jnp.asarray(tokens), mask_BT=jnp.asarray(mask),
                                    positions_BT=gpt.positions_from_mask(jnp.asarray(mask))).logits_BTV)
    ranks = []
    for row, d in enumerate(drawn):
        step_logits = logits[row, tokens.shape[1] - len(d) - 1:-1]  # the logits that predicted each drawn token
        ranks += (step_logits > step_logits[np.arange(len(d)), d][:, None]).sum(-1).tolist()
    assert max(ranks) <= 2 and max(ranks) > 0, ranks  # within the top 3, and not always the most likely


def test_settings_and_families_are_checked_before_compiling(hf_gpt2):
    _, _, decoder, params = hf_gpt2
    for bad, match in [({"max_new_tokens": 0}, "must be ≥ 1"), ({"top_p": 0.0}, r"in \(0, 1\]"),
                       ({"temperature": 0.0}, "must be > 0"), ({"num_beams": 2, "do_sample": True}, "deterministic"),
                       ({"early_stopping": "sometimes"}, "choose False, True or 'never'"),
                       ({"stop_token_ids": (400,)}, "outside the vocabulary")]:
        with pytest.raises(ValueError, match=match):
            gen.generate(decoder, params, [[1, 2]], gen.GenerationConfig(**bad))
    with pytest.raises(ValueError, match=r"Prompts \[1\] are empty"):
        gen.generate(decoder, params, [[1], []])
    with pytest.raises(ValueError, match=r"Prompt token ids \[301\] are outside"):
        gen.generate(decoder, params, [[1, 301]])
    _, bert_cfg = models.get_preset("bert-tiny")
    with pytest.raises(ValueError, match="has no decoder steps"):
        gen.decoder_for("bert", bert_cfg)
    assert models.check_family(gpt) == [] and gen.decoder_for("gpt1", models.get_preset("gpt1-tiny")[1])


# ------------------------------------------------------------------------------------------------------ CLI

SMALL = ["--config.data.max_documents=200", "--config.data.max_eval_documents=20", "--config.data.seq_len=64",
         "--config.data.vocab_size=1000", "--config.train.batch_size=8", "--config.train.progress=False",
         "--config.optim.warmup_steps=2", "--config.optim.learning_rate=3e-3"]


def test_cli_generates_from_a_pretrained_gpt2(tmp_path, capsys):
    """A GPT-2-small-shaped tiny model pretrained a few steps on the bundled corpus continues a prompt."""
    run = tmp_path / "run"
    assert cli.main(["pretrain", "--config", f"{ROOT / 'configs' / 'gpt.py'}:version=2,size=tiny",
                     "--workdir", str(run), *SMALL, "--config.train.steps=8", "--config.train.eval_every=8",
                     "--config.train.checkpoint_every=8", "--config.train.eval_batches=1",
                     "--config.train.log_every=8"]) == 0
    capsys.readouterr()
    assert cli.main(["generate", "--model", str(run), "--prompt", "In the beginning God created",
                     "--prompt", "The", "--max-new-tokens", "6", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    _, _, _, tokenizer = load_pretrained(run)
    for line, prompt in zip(lines, ("In the beginning God created", "The")):
        row = json.loads(line)
        assert set(row) == {"prompt_ids", "output_ids", "text"}
        assert row["prompt_ids"] == tokenizer.encode(prompt).ids
        assert 1 <= len(row["output_ids"]) <= 6 and tokenizer.decode(row["output_ids"]) == row["text"]
    with pytest.raises(SystemExit):  # one strategy at a time (argparse exits 2)
        cli.main(["generate", "--model", str(run), "--prompt", "The", "--greedy", "--temperature", "0.7"])

"""Scoring (`llm_jax.eval.score`) against transformers' losses and direct loops."""

import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest

from llm_jax import models
from llm_jax.eval import score
from llm_jax.interop import load_hf

TOL = {"rtol": 1e-4, "atol": 1e-4}
VOCAB = 211


@pytest.fixture(scope="module")
def gpt2(require, tmp_path_factory):
    """A random GPT2LMHeadModel (weights ~ N(0, 0.3²), so the next-token distributions are far from uniform) and the
    same weights in ours."""
    torch, transformers = require("torch"), require("transformers")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_inner=48, n_positions=24, attn_implementation="eager"))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            noise = 0.3 * torch.randn(p.shape, generator=g)
            p.copy_(1 + noise if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else noise)
    hf.eval()
    path = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(path)
    family, config, params = load_hf(path)
    return torch, hf, family, config, params


def _hf_loss(torch, hf, ids, labels):
    """transformers' mean loss and the number of tokens it averages (labels shifted inside the model)."""
    with torch.no_grad():
        out = hf(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
    return float(out.loss), int((np.asarray(labels)[1:] != -100).sum())


def test_causal_loglikelihood_equals_transformers_loss(gpt2):
    torch, hf, family, config, params = gpt2
    rng = np.random.default_rng(0)
    requests = [(rng.integers(0, VOCAB, n).tolist(), rng.integers(0, VOCAB, m).tolist())
                for n, m in ((5, 3), (1, 1), (12, 6), (30, 4))]  # the last one is cut to the 24 positions
    scores = score.causal_loglikelihood(family, config, params, requests, batch_size=4)
    for (context, cont), s in zip(requests, scores):
        full = (context + cont)[-25:]
        n_ctx = len(full) - len(cont)
        loss, n = _hf_loss(torch, hf, full[:24] if len(full) > 24 else full,
                           ([-100] * n_ctx + cont)[:24] if len(full) > 24 else [-100] * n_ctx + cont)
        if len(full) <= 24:
            assert n == len(cont) == len(s.logprobs)
            np.testing.assert_allclose(-s.total / n, loss, **TOL)
        assert s.truncated == len(context) + len(cont) - len(full)
    # Per-token values and is_greedy, from the full logits of one request.
    context, cont = requests[2]
    with torch.no_grad():
        logits = hf(input_ids=torch.tensor([context + cont])).logits[0].numpy()
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(
        -1, keepdims=True)
    want = logp[np.arange(len(context) - 1, len(context) + len(cont) - 1), cont]
    np.testing.assert_allclose(scores[2].logprobs, want, **TOL)
    greedy_cont = []
    with torch.no_grad():  # transformers' greedy continuation, one token at a time
        for _ in range(4):
            greedy_cont.append(int(hf(input_ids=torch.tensor([context + greedy_cont])).logits[0, -1].argmax()))
    assert score.causal_loglikelihood(family, config, params, [(context, greedy_cont)])[0].greedy
    assert not score.causal_loglikelihood(family, config, params,
                                          [(context, greedy_cont[:2] + [(greedy_cont[2] + 1) % VOCAB])])[0].greedy


@pytest.mark.parametrize("stride", [24, 10, 3])
def test_perplexity_equals_the_transformers_stride_loop(gpt2, stride):
    """HF's "perplexity of fixed-length models" loop (window 24) against ours; stride 24 over 24 tokens is the
    plain `labels=input_ids` loss."""
    torch, hf, family, config, params = gpt2
    ids = np.random.default_rng(1).integers(0, VOCAB, 61).tolist()
    nll, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + 24, len(ids))
        trg = end - prev_end
        window = ids[begin:end]
        labels = [-100] * (len(window) - trg) + window[len(window) - trg:]
        loss, n = _hf_loss(torch, hf, window, labels)
        nll += loss * n
        count += n
        prev_end = end
        if end == len(ids):
            break
    ours = score.causal_perplexity(family, config, params, ids, stride=stride)
    # Overlapping windows predict every token but the first; disjoint ones (stride = window) also skip each
    # window's first token, which has no context inside its window (as in transformers' loop).
    assert ours.tokens == count == len(ids) - (1 if stride < 24 else ours.windows)
    np.testing.assert_allclose(ours.nll_per_token, nll / count, **TOL)
    np.testing.assert_allclose(ours.perplexity, np.exp(nll / count), rtol=1e-4)
    one = score.causal_perplexity(family, config, params, ids[:24])
    loss, n = _hf_loss(torch, hf, ids[:24], ids[:24])
    assert one.tokens == n == 23 and one.windows == 1
    np.testing.assert_allclose(one.nll_per_token, loss, **TOL)


def test_scorers_refuse_what_they_cannot_score(gpt2):
    _, _, family, config, params = gpt2
    with pytest.raises(ValueError, match="stride"):
        score.causal_perplexity(family, config, params, [1, 2, 3], stride=30)
    with pytest.raises(ValueError, match="≥ 2"):
        score.causal_perplexity(family, config, params, [1])
    with pytest.raises(ValueError, match="context token"):
        score.causal_loglikelihood(family, config, params, [([], [1])])
    with pytest.raises(ValueError, match="vocab"):
        score.causal_loglikelihood(family, config, params, [([1], [VOCAB])])
    with pytest.raises(ValueError, match="masked LM"):
        score.pseudo_log_likelihood(family, config, params, [[1, 2]], 0)
    with pytest.raises(ValueError, match="encoder-decoder"):
        score.seq2seq_loglikelihood(family, config, params, [([1], [2])])


def test_t5_target_loglikelihood_equals_its_loss(require, tmp_path):
    torch, transformers = require("torch"), require("transformers")
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2, num_heads=4,
        dropout_rate=0.0, attn_implementation="eager", feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if name.endswith("layer_norm.weight") else 0.3 * noise)
    hf.eval().save_pretrained(tmp_path)
    family, config, params = load_hf(tmp_path)
    rng = np.random.default_rng(3)
    requests = [(rng.integers(2, VOCAB, n).tolist() + [1], rng.integers(2, VOCAB, m).tolist() + [1])
                for n, m in ((6, 2), (17, 5), (3, 1))]
    scores = score.seq2seq_loglikelihood(family, config, params, requests, batch_size=2)
    for (src, tgt), s in zip(requests, scores):
        with torch.no_grad():
            loss = float(hf(input_ids=torch.tensor([src]), labels=torch.tensor([tgt])).loss)
        assert len(s.logprobs) == len(tgt)
        np.testing.assert_allclose(-s.mean, loss, **TOL)


def _random_init(family, config, seed):
    model = models.build(family, config)
    x = np.ones((1, 8), np.int32)
    return nn.meta.unbox(jax.jit(lambda k: model.init(k, x, mlm_positions_BP=np.zeros((1, 1), np.int32)))(
        jax.random.key(seed))["params"])


def test_bert_pseudo_log_likelihood_equals_a_per_position_loop():
    config = dataclasses.replace(models.get_preset("bert-tiny")[1], vocab_size=120, num_layers=1,
                                 max_position_embeddings=40, hidden_dropout=0.0, attention_dropout=0.0)
    params = _random_init("bert", config, 0)
    model = models.build("bert", config)
    forward = jax.jit(lambda p, x, t: model.apply({"params": p}, x, mlm_positions_BP=t).mlm_logits_BTV)
    rng = np.random.default_rng(4)
    cls, sep, mask_id = 2, 3, 4
    seqs = [[cls, *rng.integers(5, 120, n).tolist(), sep] for n in (3, 9, 14)]
    plls = score.pseudo_log_likelihood("bert", config, params, seqs, mask_id, skip_ids=(cls, sep), batch_size=8)
    for seq, pll in zip(seqs, plls):
        want = []
        for t in range(1, len(seq) - 1):  # one forward pass per position, no padding, no batching
            x = np.asarray([seq], np.int32)
            x[0, t] = mask_id
            logits = forward(params, x, np.asarray([[t]], np.int32))
            want.append(float(jax.nn.log_softmax(logits[0, 0])[seq[t]]))
        assert len(pll) == len(seq) - 2
        np.testing.assert_allclose(pll, want, **TOL)


def test_discriminator_original_log_probs_read_the_rtd_logits():
    config = dataclasses.replace(models.get_preset("electra-tiny")[1], vocab_size=120, hidden_dropout=0.0,
                                 attention_dropout=0.0)
    params = _random_init("electra", config, 1)
    x = np.random.default_rng(5).integers(5, 120, (3, 10)).astype(np.int32)
    m = np.ones_like(x, bool)
    m[1, 6:] = False
    got = score.original_log_probs("electra", config, params, x, m, batch_size=2)
    model = models.build("electra", config)
    logits = jax.jit(lambda p: model.apply({"params": p}, x, mask_BT=m).rtd_logits_BT)(params)
    np.testing.assert_allclose(got, np.log(1 - jax.nn.sigmoid(logits)), **TOL)
    with pytest.raises(ValueError, match="replaced-token detector"):
        score.original_log_probs("bert", config, params, x, m)

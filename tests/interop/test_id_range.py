"""Issue #10 item 1: out-of-range ids are refused with the field and the range, on every public path.

Through the Python API (`interop.load_hf` → `models.build(...).apply`) a BERT input with one token id equal to
`vocab_size + 5` used to return NaN in every position of that row; transformers raises. A wrong answer must not
look like a right one.
"""

import dataclasses

import jax
import numpy as np
import pytest

from llm_jax import models, sharding
from llm_jax.interop import load_hf, save_hf
from llm_jax.eval.predict import Predictor
from llm_jax.models import heads

V, T = 50, 8


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, random_params):
    cfg = models.make_config("bert", **{**vars(models.get_preset("bert-tiny")[1]), "vocab_size": V,
                                        "max_position_embeddings": T})
    path = tmp_path_factory.mktemp("hf") / "bert"
    save_hf("bert", cfg, random_params("bert", cfg, 0), path)
    return dict(zip(("family", "config", "params"), load_hf(path)))


def _ok_tokens():
    return np.full((2, T), 7, np.int32)


@pytest.mark.parametrize("field, kwargs, message", [
    ("tokens", {}, r"token ids \(model.vocab_size\) must be in \[0, 50\).*\[7, 55\]"),
    ("segment_ids_BT", {}, r"token type \(segment\) ids \(model.type_vocab_size\) must be in \[0, 2\)"),
    ("positions_BT", {}, r"position ids \(model.max_position_embeddings\) must be in \[0, 8\)"),
])
def test_eager_apply_refuses_out_of_range_ids(loaded, field, kwargs, message):
    model = models.build(loaded["family"], loaded["config"])
    tokens = _ok_tokens()
    bad = np.zeros((2, T), np.int32)
    bad[1, 3] = {"tokens": V + 5, "segment_ids_BT": 2, "positions_BT": T + 1}[field]
    if field == "tokens":
        tokens = tokens.copy()
        tokens[1, 3] = V + 5
    else:
        kwargs = {field: bad}
    with pytest.raises(ValueError, match=message):
        model.apply({"params": loaded["params"]}, tokens, **kwargs)
    # In range: finite everywhere (the same call path, so the check is not a blanket refusal).
    out = model.apply({"params": loaded["params"]}, _ok_tokens())
    assert np.isfinite(np.asarray(out.mlm_logits_BTV)).all()


def test_negative_ids_are_refused_too(loaded):
    model = models.build(loaded["family"], loaded["config"])
    tokens = _ok_tokens()
    tokens[0, 0] = -1
    with pytest.raises(ValueError, match=r"range over \[-1, 7\]"):
        model.apply({"params": loaded["params"]}, tokens)


def test_jitted_predictor_checks_on_the_host(loaded):
    """Under jit the gather cannot raise: the public batched path checks before it calls the compiled forward."""
    cfg = dataclasses.replace(loaded["config"], hidden_dropout=0.0)
    model = heads.build("bert", cfg, "classification", 2)
    mesh = sharding.make_mesh(sharding.MeshConfig(data=1), jax.devices()[:1])
    predictor = Predictor(model, "classification", mesh, 2)
    tokens = _ok_tokens()
    tokens[0, 2] = V
    arrays = {"inputs": tokens, "mask": np.ones((2, T), bool), "segment_ids": np.zeros((2, T), np.int32)}
    with pytest.raises(ValueError, match=r"token ids \(model.vocab_size\) must be in \[0, 50\)"):
        predictor(None, arrays)

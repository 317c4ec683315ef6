"""Installed as a package, llm_jax runs: the wheel, in a fresh environment, from a folder outside the repository.

The wheel is built from a copy of the sources (no `build/` left in the checkout, no stale files from an earlier
build) without build isolation or an index, and installed alone (`--no-deps`) into a new virtual environment; the
dependencies come from this interpreter's site-packages through a `.pth` file. Such a path entry does not run the
`.pth` files it holds, so the editable install of the checkout (a `.pth` + import hook there) cannot shadow the
wheel — and the test checks that `llm_jax` is imported from the new environment.
"""

import json
import math
import os
import pathlib
import shutil
import site
import subprocess
import sys
import sysconfig

import pytest

from llm_jax import models, recipe_files

ROOT = pathlib.Path(__file__).resolve().parents[1]
# What the build reads: the project metadata (pyproject.toml, setup.py, the README it names), the package, the recipes.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "llm_jax", "configs")
TINY = ["--config.train.steps=2", "--config.train.batch_size=8", "--config.train.log_every=1",
        "--config.train.eval_every=0", "--config.train.progress=False", "--config.data.max_documents=300",
        "--config.data.max_eval_documents=20", "--config.data.seq_len=32", "--config.data.vocab_size=1000",
        "--config.objective.max_predictions=5"]


def _run(args, cwd, env, timeout=600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, f"{args} → {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def _clean_env() -> dict[str, str]:
    """This environment without anything that could put the checkout on the path, and with one CPU device."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    # conftest.py gives this process 8 fake devices; a fresh user's run has one.
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags)
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`(venv, bin dir, env)`: the wheel of this checkout installed alone into a new virtual environment."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    env = _clean_env()
    # `pip wheel` as a user runs it, but offline: this environment's setuptools (the [test] extra pins its floor).
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-index", "--no-deps", "--no-build-isolation",
          "--wheel-dir", tmp / "dist", src], cwd=tmp, env=env)
    wheels = list((tmp / "dist").glob("llm_jax-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp, env=env)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    # Installed before the .pth below exists: pip sees an empty environment and writes the wheel's `llm-jax` script.
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-index", "--no-deps",
          wheels[0]], cwd=tmp, env=env)
    venv_site = pathlib.Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  cwd=tmp, env=env).stdout.strip())
    parents = dict.fromkeys(p for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"],
                                        sysconfig.get_paths()["platlib"]] if os.path.isdir(p))
    assert str(ROOT) not in parents
    (venv_site / "zz_dependencies_from_the_test_environment.pth").write_text("\n".join(parents) + "\n")
    return venv, bin_dir, env


@pytest.mark.slow
def test_the_installed_wheel_imports_itself_and_carries_every_recipe(installed, tmp_path):
    venv, bin_dir, env = installed
    code = "import llm_jax, llm_jax.recipe_files as r; print(llm_jax.__file__); print(r.recipes_dir())"
    out = _run([bin_dir / "python", "-c", code], cwd=tmp_path, env=env).stdout.split()
    package, folder = (pathlib.Path(p).resolve() for p in out)
    assert package.is_relative_to(venv.resolve()), f"llm_jax came from {package}, not the new environment"
    assert folder == package.parent / "configs"
    assert sorted(p.name for p in folder.glob("*.py")) == sorted(p.name for p in (ROOT / "configs").glob("*.py"))
    listing = _run([bin_dir / "llm-jax", "recipes"], cwd=tmp_path, env=env).stdout
    for recipe in recipe_files.all_recipes():
        assert f"\n  {recipe.spec()}\n" in listing
    path = _run([bin_dir / "llm-jax", "recipes", "--path", "bert"], cwd=tmp_path, env=env).stdout.strip()
    assert pathlib.Path(path).resolve() == folder / "bert.py"


@pytest.mark.slow
def test_the_installed_wheel_pretrains_a_recipe_by_name_and_describes_the_presets(installed, tmp_path):
    _, bin_dir, env = installed
    done = _run([bin_dir / "llm-jax", "pretrain", "--config", "bert:size=tiny", "--workdir", "run", *TINY],
                cwd=tmp_path, env=env)
    assert "[llm-jax] done: steps 0→2" in done.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["end_step"] == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows
                                                                      if "loss" in r)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["family"] == "bert"

    described = _run([bin_dir / "llm-jax", "describe"], cwd=tmp_path, env=env).stdout
    for family, module in models.FAMILIES.items():
        assert f"\n{family}\n" in described
        for name in module.PRESETS:
            assert f"  {name} " in described
    # The published counts (README, and transformers' own count): one per family at least.
    for name, count in {"bert-base": 110_106_428, "roberta-base": 124_697_433, "albert-base": 11_813_810,
                        "distilbert-base": 66_985_530, "electra-base": 119_386_427}.items():
        assert any(line.split()[:2] == [name, f"{count:,}"] for line in described.splitlines()), name

"""Packaging, beside pyproject.toml (which holds everything else): the recipe folder `configs/` ships inside the
package as `llm_jax/configs/`, so an installed llm_jax runs `--config bert:size=tiny` without a checkout.

pyproject.toml cannot say this: its package discovery finds only folders under `llm_jax/`, and the recipes stay in
the top-level `configs/` that users browse and copy (one copy, mapped here; `llm_jax.recipe_files` finds it in
either place).
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["llm_jax", "llm_jax.*"]), "llm_jax.configs"],
    package_dir={"llm_jax.configs": "configs"},
)

"""The family contract (`llm_jax.models.family`) over the registry, and no family names outside `models/`."""

import pathlib
import re

import pytest

from llm_jax import models, objectives

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("family", sorted(models.FAMILIES))
def test_every_registered_family_satisfies_the_contract(family):
    module = models.family_module(family)
    assert models.check_family(module) == []
    assert module.NAME == family
    assert module.DEFAULT_OBJECTIVE in objectives.OBJECTIVES
    # The default objective's special tokens are among the family's declared roles.
    needed = set(objectives.objective_class(module.DEFAULT_OBJECTIVE).required_roles)
    assert needed <= set(module.TOKENIZER.roles), needed - set(module.TOKENIZER.roles)
    for name, cfg in module.PRESETS.items():
        cfg.validate()
        assert cfg.max_seq_len > 0 and cfg.width > 0, name


def test_check_family_names_what_is_missing():
    import types

    fake = types.ModuleType("llm_jax.models.fake")
    fake.NAME = "fake"
    problems = models.check_family(fake)
    assert "llm_jax.models.fake lacks Config" in problems and "llm_jax.models.fake lacks towers" in problems
    fake.decode_step = lambda *args: None  # the decoding members come together
    assert any("lacks ['init_decode_state', 'reorder_decode_state', 'stop_token_ids']" in p
               for p in models.check_family(fake))
    fake.TOKEN_EMBEDDING = "embeddings/word"  # the bias-test members come together, the path as a tuple of names
    problems = models.check_family(fake)
    assert any("lacks ['pooled_features']" in p for p in problems)
    assert any("TOKEN_EMBEDDING must be a tuple" in p for p in problems)


def test_no_family_name_branches_outside_models():
    """The issue's grep, for every registered family: family names live in models/ and configs/ only."""
    names = "|".join(sorted(models.FAMILIES))
    pattern = re.compile(rf"\"({names})\"|'({names})'")
    files = [p for sub in ("train", "objectives", "eval", "interop", "data", "layers")
             for p in (ROOT / "llm_jax" / sub).rglob("*.py")]
    files += [ROOT / "llm_jax" / f for f in ("flops.py", "cli.py", "config.py", "recipes.py", "recipe_files.py",
                                            "sharding.py", "generate.py")]
    hits = [f"{path.relative_to(ROOT)}:{i}" for path in files
            for i, line in enumerate(path.read_text().splitlines(), 1)
            if pattern.search(line) and "# not a family branch" not in line]  # e.g. a FLOPs convention's name
    assert hits == []


def test_runtime_fields_carry_over_onto_a_checkpoint_config():
    _, base = models.get_preset("bert-base")
    _, tiny = models.get_preset("bert-tiny")
    import dataclasses

    run = dataclasses.replace(tiny, dtype="bfloat16", remat="full", hidden_dropout=0.0)
    merged = models.with_runtime(base, run)
    assert (merged.hidden_size, merged.dtype, merged.remat, merged.hidden_dropout) == (768, "bfloat16", "full", 0.0)

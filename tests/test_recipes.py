"""Recipes by name (`--config bert:size=tiny`), by file, and what `llm-jax recipes` reads from their source."""

import ast
import pathlib

import pytest

from llm_jax import cli, recipe_files
from llm_jax.config import load_config_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def test_every_file_in_configs_is_a_recipe_of_that_name():
    assert recipe_files.recipes_dir() == CONFIGS
    assert recipe_files.available() == {p.stem: p for p in sorted(CONFIGS.glob("*.py"))}


def test_a_name_and_the_file_forms_resolve_to_the_same_recipe_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    want = f"{CONFIGS / 'bert.py'}:size=tiny,objective=mlm"
    for spec in ("bert", "bert.py", "configs/bert.py", "./configs/bert.py"):
        assert recipe_files.resolve(f"{spec}:size=tiny,objective=mlm") == want
    assert recipe_files.resolve("finetune") == str(CONFIGS / "finetune.py")
    assert load_config_file("roberta:size=tiny") == load_config_file(f"{CONFIGS / 'roberta.py'}:size=tiny")


def test_a_users_file_wins_over_the_recipe_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    mine = (CONFIGS / "bert.py").read_text().replace("    return cfg", "    cfg.train.steps = 7\n    return cfg")
    assert "cfg.train.steps = 7" in mine
    for rel in ("configs/bert.py", "bert.py", "bert", "elsewhere/my_recipe.py"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_text(mine)
        assert recipe_files.resolve(f"{rel}:size=mini") == f"{rel}:size=mini"
        assert load_config_file(f"{rel}:size=mini")["train"]["steps"] == 7
        (tmp_path / rel).unlink()
    assert load_config_file("bert:size=mini")["train"]["steps"] == 300  # the recipe's own


@pytest.mark.parametrize("spec", ["bertt:size=tiny", "runs/bert.py", "/nowhere/configs/bert.py", "configs/nope.py"])
def test_neither_a_file_nor_a_recipe_is_one_line_that_lists_the_recipes(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        recipe_files.resolve(spec)
    message = str(e.value)
    assert "\n" not in message and spec.partition(":")[0] in message
    assert all(name in message for name in recipe_files.available())


def test_arguments_are_the_keys_read_from_parse_arg_with_their_defaults():
    read = {r.name: r.arguments for r in recipe_files.all_recipes()}
    assert read["bert"] == (("size", "tiny"), ("objective", "mlm_nsp"))
    assert read["distilbert"] == (("size", "tiny"), ("teacher", ""))
    assert read["finetune"] == (("model", "bert-tiny"), ("task", "wordnet-supersense"))
    source = '''
from llm_jax.recipes import parse_arg
import llm_jax.recipes as r
DEFAULT = "x"
def get_config(arg):
    args = parse_arg(arg)
    version, size = args.get("version", "2"), args.get("size", "tiny")
    width = int(r.parse_arg(arg).get("width", 128))
    other = {}.get("not_an_argument", 1)
    return args["teacher"], args.get("mode", DEFAULT), args.get("size", "ignored second read"), args.get("flag")
'''
    assert recipe_files.arguments(ast.parse(source)) == (
        ("version", "2"), ("size", "tiny"), ("width", "128"), ("teacher", None), ("mode", "DEFAULT"),
        ("flag", None))
    assert recipe_files.arguments(ast.parse("def get_config():\n    return None\n")) == ()


def test_the_listed_defaults_are_the_recipes_own_defaults():
    """`NAME:key=default,...` as listed gives the config `get_config()` gives with no argument."""
    checked = 0
    for recipe in recipe_files.all_recipes():
        if recipe.arguments and all(default not in (None, "") for _, default in recipe.arguments):
            assert load_config_file(recipe.spec()) == load_config_file(str(recipe.path)), recipe.name
            checked += 1
    assert checked >= 4


def test_cli_recipes_lists_every_recipe_and_shows_one(capsys):
    assert cli.main(["recipes"]) == 0
    out = capsys.readouterr().out
    for recipe in recipe_files.all_recipes():
        assert f"\n  {recipe.spec()}\n      {recipe.summary}\n" in out
    assert cli.main(["recipes", "distilbert"]) == 0
    out = capsys.readouterr().out
    assert str(CONFIGS / "distilbert.py") in out and "teacher      (no default)" in out
    assert "Sanh et al. 2019" in out
    assert cli.main(["recipes", "--path", "electra"]) == 0
    assert capsys.readouterr().out == f"{CONFIGS / 'electra.py'}\n"
    assert cli.main(["recipes", "nope"]) == 1
    assert "neither a config file nor a recipe" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    assert "recipes" in capsys.readouterr().out


def test_cli_verbs_take_a_recipe_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["flops", "--config", "bert:size=base", "--convention", "electra", "--batch", "256",
                     "--seq", "512", "--steps", "1000000"]) == 0
    assert "total: 6.4283e+19" in capsys.readouterr().out  # ELECTRA's flops_computation.py for BERT-Base
    assert cli.main(["pretrain", "--config=bertt:size=tiny", "--workdir", str(tmp_path / "run")]) == 1
    assert "neither a config file nor a recipe" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_xlnet_base_at_shorter_rows_keeps_the_recipe_proportions():
    """`configs/xlnet.py:size=base` is the paper's rows of 512 (reuse 256, memory 384); `seq_len=128` (the throughput
    benchmark's rows) scales the three together, and a length that cannot be halved into whole spans is refused."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("xlnet_recipe", ROOT / "configs" / "xlnet.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    full, short = recipe.get_config("size=base"), recipe.get_config("size=base,seq_len=128")
    assert (full.data.seq_len, full.objective.reuse_len, full.objective.perm_size, full.objective.mem_len) == \
        (512, 256, 256, 384)
    assert (short.data.seq_len, short.objective.reuse_len, short.objective.perm_size, short.objective.mem_len) == \
        (128, 64, 64, 96)
    with pytest.raises(ValueError, match="seq_len=30"):
        recipe.get_config("size=base,seq_len=30")

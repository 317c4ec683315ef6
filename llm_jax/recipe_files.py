"""The recipes by name: `--config bert:size=tiny` finds `configs/bert.py`, in a checkout or in the installed package.

There is one copy of each recipe, the top-level `configs/NAME.py` that users browse and copy. The wheel carries
that folder as `llm_jax/configs/` (setup.py maps it at build time; nothing is copied by hand); a checkout (an
editable install, or the repository on `PYTHONPATH`) reads `configs/` beside the package. Every `configs/NAME.py`
that does not start with `_` is a recipe: a new file is a new recipe, with nothing to register.

A `--config` value is `SPEC[:ARG]`. A SPEC that is an existing file is that file (a user's own recipe); otherwise
`NAME`, `NAME.py` or `configs/NAME.py` names a recipe. The arguments a recipe takes are read from its source, not
run: the keys it looks up on `parse_arg(arg)` (`llm_jax.recipes.parse_arg`) with their defaults.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import pathlib

log = logging.getLogger(__name__)

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
FOLDER = "configs"


def recipes_dir() -> pathlib.Path:
    """The folder that holds the recipes: `llm_jax/configs/` of an installed wheel, else a checkout's `configs/`.

    Raises:
      FileNotFoundError: neither exists (an install that predates packaged recipes, or a partial copy).
    """
    installed = PACKAGE_DIR / FOLDER
    if installed.is_dir():
        return installed
    # A checkout: `configs/` beside the package, in the folder whose pyproject.toml built it (so a stray `configs/`
    # beside an installed package in site-packages is never mistaken for ours).
    checkout = PACKAGE_DIR.parent / FOLDER
    if checkout.is_dir() and (PACKAGE_DIR.parent / "pyproject.toml").is_file():
        return checkout
    raise FileNotFoundError(f"No recipe folder in {installed} or {checkout}; reinstall llm_jax (its wheel ships the "
                            "recipes) or pass a recipe file: --config PATH.py[:ARG].")


def available() -> dict[str, pathlib.Path]:
    """Every recipe name → its file, sorted by name."""
    folder = recipes_dir()
    return {p.stem: p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")}


def _recipe_name(path: str) -> str | None:
    """The recipe a missing path may name: `bert`, `bert.py` or `configs/bert.py` → `bert`; else None."""
    parts = pathlib.PurePath(path).parts
    if len(parts) == 2 and parts[0] == FOLDER and parts[1].endswith(".py"):
        return parts[1][:-3]
    if len(parts) == 1:
        return parts[0].removesuffix(".py")
    return None


def resolve(spec: str) -> str:
    """`SPEC[:ARG]` → `FILE[:ARG]`, FILE an existing recipe file (the form `ml_collections` config files take).

    Args:
      spec: a file path, or a recipe name (`bert`, `bert.py`, `configs/bert.py`), then optionally `:` and the
        recipe's argument (`size=tiny,objective=mlm`).

    Returns:
      `spec` itself when its path is a file; else the named recipe's file with the same argument.

    Raises:
      FileNotFoundError: no such file and no recipe of that name (the message lists the recipes).
    """
    path, sep, arg = spec.partition(":")
    if pathlib.Path(path).is_file():
        return spec
    name = _recipe_name(path)
    recipes = available()
    if name not in recipes:
        raise FileNotFoundError(f"{path!r} is neither a config file nor a recipe; recipes: {', '.join(recipes)} "
                                "(`llm-jax recipes` lists their arguments), or pass a recipe file PATH.py[:ARG].")
    if name != path:
        log.info("%s is not a file here: using the recipe %r (%s).", path, name, recipes[name])
    return f"{recipes[name]}{sep}{arg}"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What `llm-jax recipes` shows of one recipe file.

    Attributes:
      name: the file's stem, what `--config NAME[:ARG]` takes.
      path: the file.
      doc: its module docstring ("" without one); `summary` is its first line.
      arguments: `(key, default)` pairs in source order; default None when the key is required (`args["key"]`),
        the default's source text when it is not a literal.
    """

    name: str
    path: pathlib.Path
    doc: str
    arguments: tuple[tuple[str, str | None], ...]

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    def spec(self) -> str:
        """`NAME:key=default,...`: the recipe's defaults as a `--config` value (`key=` where none is given)."""
        args = ",".join(f"{key}={'' if default is None else default}" for key, default in self.arguments)
        return f"{self.name}:{args}" if args else self.name


def _is_parse_arg(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and (getattr(node.func, "id", None) == "parse_arg"
                                            or getattr(node.func, "attr", None) == "parse_arg"))


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def arguments(tree: ast.Module) -> tuple[tuple[str, str | None], ...]:
    """The keys a recipe reads from `parse_arg(arg)` — `.get(KEY, DEFAULT)` or `[KEY]` on its result, directly or
    through a name it was assigned to — as `(key, default)` in source order, each key once."""
    bound = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and _is_parse_arg(node.value)
             for target in node.targets if isinstance(target, ast.Name)}

    def is_args(node: ast.AST) -> bool:
        return _is_parse_arg(node) or (isinstance(node, ast.Name) and node.id in bound)

    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and is_args(node.func.value) and node.args and _string(node.args[0]) is not None):
            default = node.args[1] if len(node.args) > 1 else None
            text = None if default is None else (_string(default) if _string(default) is not None
                                                  else ast.unparse(default))
            found.append(((node.lineno, node.col_offset), _string(node.args[0]), text))
        elif isinstance(node, ast.Subscript) and is_args(node.value) and _string(node.slice) is not None:
            found.append(((node.lineno, node.col_offset), _string(node.slice), None))
    out: dict[str, str | None] = {}
    for _, key, default in sorted(found, key=lambda row: row[0]):
        out.setdefault(key, default)
    return tuple(out.items())


def read(path: pathlib.Path) -> Recipe:
    """A recipe file's name, docstring and arguments, read from its source (nothing is imported or run).

    Raises:
      ValueError: the file is not valid Python.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as e:
        raise ValueError(f"Recipe {path} is not valid Python ({e.msg}, line {e.lineno}); fix or remove it.") from e
    return Recipe(name=path.stem, path=path, doc=ast.get_docstring(tree) or "", arguments=arguments(tree))


def all_recipes() -> list[Recipe]:
    """Every recipe, sorted by name."""
    return [read(path) for path in available().values()]

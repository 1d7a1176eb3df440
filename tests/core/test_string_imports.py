"""Every module and attribute dtmerge imports by name exists: a renamed or moved module fails here,
not in the middle of a run (a stage, a registry entry or a command is only imported when used).

The strings are found in the source (tests/core/test_import_layers.py: `named_modules`), so a new
table of names is checked without being listed here.
"""

import ast
import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_import_layers import SRC, named_modules  # noqa: E402


def named_strings() -> list[tuple[str, str]]:
    """("file:line", "dtmerge.x.y[:attr]") for every string in the package that names a module."""
    return [(f"{path.relative_to(SRC)}:{line}", name) for path in sorted(SRC.rglob("*.py"))
            for line, name in named_modules(ast.parse(path.read_text()))]


def lazy_packages() -> list[str]:
    """Packages whose public names are imported on first use (a module-level `__getattr__`)."""
    found = []
    for init in sorted(SRC.rglob("__init__.py")):
        tree = ast.parse(init.read_text())
        defines = {t.id for node in tree.body if isinstance(node, ast.Assign)
                   for t in ast.walk(node.targets[0]) if isinstance(t, ast.Name)}
        defines |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        if "__getattr__" in defines:
            found.append(".".join(("dtmerge", *init.parent.relative_to(SRC).parts)))
    return found


@pytest.mark.parametrize("where,name", named_strings())
def test_every_named_module_and_attribute_exists(where, name):
    module, _, attr = name.partition(":")
    loaded = importlib.import_module(module)
    if attr:
        assert hasattr(loaded, attr), f"src/dtmerge/{where}: {module} has no attribute {attr!r}"


def test_the_wiring_tables_are_all_found():
    found = {name for _, name in named_strings()}
    from dtmerge.cli.main import COMMANDS
    from dtmerge.disperse.registry import STRATEGIES
    from dtmerge.merge.methods import METHODS
    from dtmerge.pipeline import STAGE_FUNCTIONS
    from dtmerge.recipes.registry import RECIPES

    tables = [*STAGE_FUNCTIONS.values(), *(m for m, _ in COMMANDS.values())]
    for registry in (STRATEGIES, METHODS, RECIPES):
        tables += list(registry._entries.values())
    assert set(tables) <= found


@pytest.mark.parametrize("package", lazy_packages())
def test_every_lazy_export_resolves(package):
    loaded = importlib.import_module(package)
    assert loaded.__all__, f"{package} exports nothing"
    for name in loaded.__all__:
        assert getattr(loaded, name) is not None, f"{package}.{name}"


def test_the_lazy_packages_are_found():
    assert {"dtmerge.evaluate", "dtmerge.train", "dtmerge.merge", "dtmerge.report"} <= set(lazy_packages())


def test_every_command_module_has_its_entry_points():
    from dtmerge.cli.main import COMMANDS

    for name, (module, _) in COMMANDS.items():
        loaded = importlib.import_module(module)
        assert callable(loaded.add_arguments) and callable(loaded.run), f"dtm {name}: {module}"


def test_every_stage_function_takes_cfg_and_run():
    import inspect

    from dtmerge.pipeline import STAGE_FUNCTIONS, stage_function

    for stage in STAGE_FUNCTIONS:
        params = list(inspect.signature(stage_function(stage)).parameters)
        assert params[:2] == ["cfg", "run"], f"stage {stage}: {params}"

"""The package's layers only import downward: a stage never reaches into a later one.

Every import counts, including those inside functions (they hide a dependency from a reader but
not from this test). Same-layer imports are allowed.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "dtmerge"

# Lowest first. A module may import from its own layer or any layer before it.
LAYERS = [
    {"errors", "registry", "terminal", "__init__"},
    {"config", "sft_fields"},
    {"rundir", "mlflow_store", "models", "process_guard", "executors", "pool_preload"},
    {"data"},
    {"disperse"},
    {"evaluate"},  # scoring is a library: training's knowledge monitor uses it
    {"train"},
    {"merge"},
    {"recipes"},
    {"results"},  # eval files as typed records and the tax analyses: report, decision, frontier read them
    {"report", "decision"},  # decision: what to ship, read off results
    {"frontier", "publish"},  # publish: the model card and `dtm push`
    {"pipeline", "dryrun", "demo", "cli"},
]


def layer_of(top: str) -> int:
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"src/dtmerge/{top}: not in any layer of {__file__}; add it to LAYERS")


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dtmerge"):
            found.append((node.lineno, node.module))
            if node.module == "dtmerge":
                found += [(node.lineno, f"dtmerge.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("dtmerge.")]
    return found


def top_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_upward_imports():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        here = rel.parts[0].removesuffix(".py")
        for line, module in imports_of(path):
            there = top_of(module)
            if there == "__init__":
                continue
            if layer_of(there) > layer_of(here):
                wrong.append(f"src/dtmerge/{rel}:{line} imports {module} ({there} is above {here})")
    assert not wrong, "upward imports:\n" + "\n".join(wrong)


def test_every_top_level_module_has_a_layer():
    for path in SRC.iterdir():
        if path.name.startswith((".", "_")) and path.name != "__init__.py":
            continue
        if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()):
            layer_of(path.name.removesuffix(".py"))

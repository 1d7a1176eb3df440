"""Every third-party package src/dtmerge imports is declared in pyproject.toml (as a dependency
or in an extra), and constraints.txt pins every declared package except torch, whose build the
Makefile chooses."""

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "dtmerge"
# Installed as a part of another declared distribution, never on its own.
PROVIDED_BY = {"pydantic_core": "pydantic"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _norm(re.match(r"[A-Za-z0-9_.-]+", spec).group(0))


def imported_top_modules() -> dict[str, str]:
    """Top-level module -> one file importing it, for absolute imports outside the stdlib."""
    found: dict[str, str] = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "dtmerge":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_requirement_name(s) for s in project["dependencies"]}
    extras = {_requirement_name(s) for specs in project["optional-dependencies"].values()
              for s in specs} - {"dtmerge"}
    return core, extras


def distribution_of(module: str) -> str:
    module = PROVIDED_BY.get(module, module)
    # An optional package that is not installed here (bitsandbytes...) is named as imported.
    dists = packages_distributions().get(module) or [module]
    return _norm(dists[0])


def test_every_imported_package_is_declared():
    core, extras = declared()
    missing = {f"{module} (distribution {distribution_of(module)}, imported in {where})"
               for module, where in imported_top_modules().items()
               if distribution_of(module) not in core | extras}
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_the_scan_sees_imports():
    modules = imported_top_modules()
    assert {"torch", "transformers", "lm_eval", "numpy", "pandas"} <= set(modules)
    assert "json" not in modules and "dtmerge" not in modules


def test_constraints_pin_every_declared_package_but_torch():
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pinned[_norm(name)] = version
    core, extras = declared()
    assert "torch" not in pinned, "torch is chosen by the Makefile, not pinned by constraints.txt"
    assert "dtmerge" not in pinned
    # Optional packages that CI does not install (embed, tensorboard, qlora, gemma) may be absent.
    needed = (core | {_requirement_name(s) for s in ("pytest", "psutil", "gguf", "numba",
                                                      "mlflow-skinny", "ray")}) - {"torch"}
    unpinned = sorted(needed - set(pinned))
    assert not unpinned, f"constraints.txt lacks {unpinned}: run `make constraints`"

"""docs/architecture.md's layer table names every top-level module of the package, and every
path it names exists, so the map cannot drift from the tree."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "dtmerge"


def architecture_section() -> str:
    return (ROOT / "docs" / "architecture.md").read_text()


def test_every_named_path_exists():
    named = set(re.findall(r"`([a-z_]+(?:/[a-z_]*)*(?:\.py)?)`", architecture_section()))
    paths = [n for n in named if n.endswith((".py", "/"))]
    assert paths, "the section names no paths"
    missing = [n for n in paths if not (SRC / n).exists() and not (ROOT / n).exists()]
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_top_level_module_is_named():
    section = architecture_section()
    tops = [p.name if p.is_dir() else p.name for p in SRC.iterdir()
            if (p.suffix == ".py" and p.name != "__init__.py")
            or (p.is_dir() and (p / "__init__.py").exists())]
    unnamed = [t for t in tops if f"`{t}`" not in section and f"`{t}/`" not in section]
    assert not unnamed, f"docs/architecture.md leaves out {unnamed}"

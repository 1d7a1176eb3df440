"""The package's layers only import downward: a stage never reaches into a later one.

Every import counts, including those inside functions (they hide a dependency from a reader but
not from this test), and so does every module named by a string: the pipeline's stages, the
registries' "module:attr" entries, the CLI's command modules and the packages' lazy export
tables are imported by name, which neither a reader's tools nor `import` statements show.
Same-layer imports are allowed. tests/core/test_string_imports.py checks every such string
names a real module and attribute.
"""

import ast
import re
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


# Modules imported by name ahead of the jobs that use them, best-effort (one that fails to import
# is skipped: executors.warmup.preload_job_modules): the pool's fork server and Ray workers load
# what a training or evaluation job will, so no dependency on those layers follows from it.
PRELOADS = {"executors/warmup.py": {"dtmerge.train.trainer", "dtmerge.train.job",
                                    "dtmerge.evaluate.harness", "dtmerge.evaluate.stage"}}

DOTTED_NAME = re.compile(r"^dtmerge(\.\w+)+(:\w+)?$")


def named_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Strings that name a dtmerge module ("dtmerge.x.y" or "dtmerge.x.y:attr"), except logger
    names and dict keys (MLflow tags such as "dtmerge.model" are keys, not modules)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "getLogger":
            skip.update(id(a) for a in node.args)
        elif isinstance(node, ast.Dict):
            skip.update(id(k) for k in node.keys if k is not None)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and DOTTED_NAME.match(node.value) and id(node) not in skip]


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dtmerge"):
            found.append((node.lineno, node.module))
            if node.module == "dtmerge":
                found += [(node.lineno, f"dtmerge.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("dtmerge.")]
    preloads = PRELOADS.get(path.relative_to(SRC).as_posix(), set())
    named = [(line, name.split(":")[0]) for line, name in named_modules(tree)]
    return found + [(line, m) for line, m in named if m not in preloads]


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


def test_modules_named_by_strings_count_as_imports(tmp_path):
    """The layer test sees a stage or registry entry named by a string as an import."""
    module = tmp_path / "wiring.py"
    module.write_text('import logging\nlog = logging.getLogger("dtmerge.monitor")\n'
                      'STAGES = {"eval": "dtmerge.evaluate:evaluate_stage"}\n'
                      'TAGS = {"dtmerge.model": "x"}\nCOMMANDS = {"run": ("dtmerge.cli.run", "help")}\n')
    assert named_modules(ast.parse(module.read_text())) == [
        (3, "dtmerge.evaluate:evaluate_stage"), (5, "dtmerge.cli.run")]


def test_string_imports_are_found_in_the_package():
    """Every kind of string-resolved wiring is seen: stages, registries, commands, lazy exports."""
    seen = {m.split(":")[0] for path in SRC.rglob("*.py")
            for _, m in named_modules(ast.parse(path.read_text()))}
    assert {"dtmerge.recipes.stages", "dtmerge.merge.methods.sparse", "dtmerge.disperse.kmeans_split",
            "dtmerge.recipes.dtm", "dtmerge.cli.run", "dtmerge.evaluate.harness",
            "dtmerge.train.stage", "dtmerge.merge.engine", "dtmerge.pool_preload"} <= seen


def module_name(path: Path) -> str:
    parts = ("dtmerge", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the dtmerge modules it imports (statically, in functions, or by name); an
    imported name that is a submodule (`from dtmerge.x import y`) is an edge to the submodule."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        preloads = PRELOADS.get(path.relative_to(SRC).as_posix(), set())
        edges = {m.split(":")[0] for _, m in named_modules(tree)} - preloads
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dtmerge"):
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
                edges |= subs or {node.module}
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("dtmerge.")}
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_a_cycle_is_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]

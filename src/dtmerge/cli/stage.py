"""`dtm disperse|train|eval|report RUN_DIR_OR_CONFIG [key=value ...]`: one stage of a run.

A run directory is read through its saved config.yaml. Stages a command depends on that are
not yet done run first (e.g. `dtm disperse` prepares the data if needed); finished ones are
skipped through the manifest.
"""

from pathlib import Path

from dtmerge.config import load_config
from dtmerge.errors import ConfigError
from dtmerge.pipeline import run_pipeline

PREREQUISITES = {"disperse": ["data", "disperse"], "train": ["train"], "eval": ["eval"],
                 "report": ["report"], "merge": ["merge"]}


def resolve_config(target: str, overrides: list[str]):
    path = Path(target)
    if path.is_dir():
        if not (path / "config.yaml").exists():
            raise ConfigError(f"{path} has no config.yaml: give a run directory made by dtm run, "
                              "or a config file")
        cfg = load_config(path / "config.yaml", overrides)
        # A run dir may have been moved: its config stays valid relative to where it is now.
        if cfg.run_dir.resolve() != path.resolve():
            cfg = cfg.model_copy(update={"runs_dir": str(path.parent), "name": path.name})
        return cfg
    return load_config(path, overrides)


def add_arguments(p):
    p.add_argument("target", help="run directory (with config.yaml) or a config YAML")
    p.add_argument("overrides", nargs="*", help="overrides such as eval.limit=50")


def run(args) -> int:
    cfg = resolve_config(args.target, args.overrides)
    run_pipeline(cfg, stages=PREREQUISITES[args.command])
    return 0

"""`dtm disperse|train|eval|report RUN_DIR_OR_CONFIG [key=value ...]`: one stage of a run.

A run directory is read through its saved config.yaml. Each command runs its own stage only:
`dtm disperse` the data and every recipe's prepare step (the own DTM's portions among them),
`dtm train` the prepare steps (skipped when done) and training, `dtm merge` the build stage;
finished jobs are skipped through the manifest. An input that is missing, or that the manifest marks unfinished
(its stage was killed or failed), is refused with the command to run first: `dtm eval` never
starts hours of training by itself. `dtm run` runs every stage in order.
"""

from pathlib import Path

from dtmerge.config import load_config
from dtmerge.errors import ConfigError
from dtmerge.rundir import load_run_config
from dtmerge.pipeline import run_pipeline

# The stages each command runs: its own (disperse also makes the data it splits).
STAGES_RUN = {"disperse": ["data", "prepare"], "train": ["prepare", "train"], "eval": ["eval"],
              "report": ["report"], "merge": ["build"]}


def resolve_config(target: str, overrides: list[str]):
    path = Path(target)
    if path.is_dir():
        if not (path / "config.yaml").exists():
            raise ConfigError(f"{path} has no config.yaml: give a run directory made by dtm run, "
                              "or a config file")
        cfg = load_run_config(path, overrides)
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
    run_pipeline(cfg, stages=STAGES_RUN[args.command])
    return 0

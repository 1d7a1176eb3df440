"""The three stages of a run that its recipes make: prepare, train, build.

Prepare: every recipe writes the data its jobs train on (the run's own DTM: its K portions).
Train: all the recipes' jobs, each listed once, go through the executors. Build: the
interpolation line (when `eval.variants` asks for it), then every recipe's model directory;
`recipes.json` records what each variant is, for the report.
"""

from __future__ import annotations

from dtmerge.recipes.base import Recipe
from dtmerge.recipes.resolve import resolve_recipes
from dtmerge.rundir import RunDir, atomic_write_json
from dtmerge.train.job import TrainJob

RECIPES_FILE = "recipes.json"


def unique_jobs(recipes: list[Recipe], run: RunDir) -> list[TrainJob]:
    """The recipes' jobs, each name once (sft is shared by sft, wise_ft...). The same name
    with different data or spec is a conflict."""
    from dtmerge.errors import ConfigError

    seen: dict[str, TrainJob] = {}
    for recipe in recipes:
        for job in recipe.jobs(run):
            other = seen.get(job.name)
            if other is None:
                seen[job.name] = job
            elif (other.data, other.out, other.spec) != (job.data, job.out, job.spec):
                raise ConfigError(f"recipes: two recipes train a job named '{job.name}' "
                                  "differently; give one of them another label")
    return list(seen.values())


def prepare_stage(cfg, run: RunDir, log=print) -> dict:
    for recipe in resolve_recipes(cfg):
        recipe.prepare(run, log)
    return {}


def train_stage(cfg, run: RunDir, log=print) -> dict:
    from dtmerge.train.stage import train_jobs

    return train_jobs(cfg, run, unique_jobs(resolve_recipes(cfg), run), log=log)


def build_stage(cfg, run: RunDir, log=print) -> dict:
    from dtmerge.merge.stage import build_interpolations

    recipes = resolve_recipes(cfg)
    if "interpolation" in cfg.eval.variants:
        build_interpolations(cfg, run, log)
    for recipe in recipes:
        recipe.build(run, log)
    write_recipes_file(recipes, run)
    return {}


def write_recipes_file(recipes: list[Recipe], run: RunDir) -> None:
    atomic_write_json(run.root / RECIPES_FILE,
                      {r.label: r.describe(run) for r in recipes})

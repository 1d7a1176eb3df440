"""The train and merge stages of a run, recipe by recipe.

Train: every recipe prepares its data, then all their jobs (each listed once) go through the
train stage's executors. Merge: every recipe builds its model directory; the interpolation
line is built even when no recipe is the run's own DTM. `recipes.json` records what each
variant is, for the report.
"""

from __future__ import annotations

from dtmerge.recipes.base import Recipe, resolve_recipes
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


def train_stage(cfg, run: RunDir, log=print) -> dict:
    from dtmerge.train.stage import train_stage as run_jobs

    recipes = resolve_recipes(cfg)
    for recipe in recipes:
        recipe.prepare(run, log)
    return run_jobs(cfg, run, log=log, jobs=unique_jobs(recipes, run))


def merge_stage(cfg, run: RunDir, log=print) -> dict:
    from dtmerge.merge.stage import build_interpolations

    recipes = resolve_recipes(cfg)
    own_dtm = any(r.name == "dtm" and r.label == "dtm" for r in recipes)
    if not own_dtm and "interpolation" in cfg.eval.variants:
        build_interpolations(cfg, run, log)  # the own DTM's merge stage builds them otherwise
    for recipe in recipes:
        recipe.build(run, log)
    write_recipes_file(recipes, run)
    return (run.job("merge") or {}) if own_dtm else {}


def write_recipes_file(recipes: list[Recipe], run: RunDir) -> None:
    atomic_write_json(run.root / RECIPES_FILE,
                      {r.label: r.describe(run) for r in recipes})

"""A run from top to bottom: data -> recipes (prepare, train, build) -> eval -> report.

DTM is one of the recipes (with sft by default): its prepare step disperses the data, its jobs
train the sub-models, its build merges them. Each stage is a plain function `stage(cfg, run)`
that reads and writes files in the run directory, so any of them can be run, resumed or tested
alone; this module only orders them.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

from dtmerge.config import RunConfig
from dtmerge.errors import ConfigError, DtmError
from dtmerge.process_guard import run_lock
from dtmerge.rundir import (STAGE_ALIASES, STAGES, RunDir, retire_stale_variants,
                            write_run_config)

# stage -> "module:function"; every function takes (cfg, run, log=print).
STAGE_FUNCTIONS = {
    "data": "dtmerge.data:prepare_data",
    "prepare": "dtmerge.recipes.stages:prepare_stage",  # every recipe's (default: dtm + sft)
    "train": "dtmerge.recipes.stages:train_stage",
    "build": "dtmerge.recipes.stages:build_stage",
    "eval": "dtmerge.evaluate:evaluate_stage",
    "report": "dtmerge.report:report_stage",
}


def stage_function(stage: str):
    module, name = STAGE_FUNCTIONS[stage].split(":")
    return getattr(importlib.import_module(module), name)


def check_stages(stages: list[str] | None) -> list[str]:
    if stages is None:
        return list(STAGES)
    stages = [STAGE_ALIASES.get(s, s) for s in stages]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages are {', '.join(STAGES)} "
                          f"({', '.join(f'{a}: {s}' for a, s in STAGE_ALIASES.items())})")
    return [s for s in STAGES if s in stages]  # always in pipeline order


def validate_and_plan(cfg: RunConfig, log=print, throughput: float | None = None) -> dict:
    """Validate everything that needs no training and print the plan."""
    from dtmerge.dryrun.checks import checked_line
    from dtmerge.dryrun.plan import format_plan, make_plan, raise_for_problems

    plan = make_plan(cfg, throughput)  # runs the input checks once; their findings are plan["problems"]
    log(format_plan(plan))
    raise_for_problems(plan)  # bad inputs, disk space, K larger than the data...
    log(checked_line(plan["problems"]))
    return plan


def run_pipeline(cfg: RunConfig, stages: list[str] | None = None, dry_run: bool = False,
                 log=print, throughput: float | None = None) -> RunDir:
    """Run the chosen stages (all by default) of `cfg` in its run directory."""
    order = check_stages(stages)
    if not dry_run:
        _start_pool_early(cfg, order)
    from dtmerge.recipes import resolve_recipes

    resolve_recipes(cfg)  # unknown recipes or parameters fail before any work
    if dry_run:
        validate_and_plan(cfg, log, throughput)
        return RunDir(cfg.run_dir)
    with run_lock(cfg.run_dir):  # one process per run directory, for the whole run
        return _run_stages(cfg, order, log)


def _start_pool_early(cfg: RunConfig, order: list[str]) -> None:
    """Start the process pool's fork server before this process checks its inputs, when the
    train or eval stage will place jobs in a pool, so that the server's imports overlap the
    checks' (see `executors.start_pool_server`)."""
    from dtmerge.executors import pool_expected, start_pool_server

    stages = []
    if "train" in order and cfg.train.executor != "ray":
        stages.append((cfg.train.parallel_jobs, cfg.train.devices))
    if "eval" in order and cfg.eval.executor != "ray":
        stages.append((cfg.eval.parallel_jobs, None))
    # The model's path as given (a Hub id or GGUF file is no local directory: no early start;
    # resolving it could convert a GGUF file, which is the stage's job, after the checks).
    if any(pool_expected(setting, devices, Path(cfg.model.path).expanduser())
           for setting, devices in stages):
        start_pool_server()


def _run_stages(cfg: RunConfig, order: list[str], log) -> RunDir:
    if "train" in order:  # check inputs up front, before hours of training
        from dtmerge.dryrun.checks import validate_inputs

        problems = validate_inputs(cfg, order)
        if problems:
            raise DtmError("inputs have problems:\n" + "\n".join(f"  - {p}" for p in problems))
    run = RunDir(cfg.run_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(run.root).free < 200 * 2**20:
        raise DtmError(f"less than 200 MB free under {run.root}: free some disk space first")
    write_run_config(run.root, cfg.to_yaml())
    retire_stale_variants(cfg, run, log)
    replicated = cfg.seeds == 1
    for stage in order:
        if stage == "report" and not replicated:
            _run_seed_replicates(cfg, order, log)
            replicated = True
        log(f"== {stage}")
        fn = stage_function(stage)
        result = fn(cfg, run, log=log)
        if stage == "train":
            # training may have removed a model scored before (a `<job>_best` the monitor no
            # longer keeps): its old result must not be read as current
            retire_stale_variants(cfg, run, log)
        if isinstance(result, dict) and result.get("summary"):
            log(result["summary"])
    if not replicated:
        _run_seed_replicates(cfg, order, log)
    return run


SEEDS_DIR = "seeds"  # <run>/seeds/seed<k>/: the run again with its seeds + k * SEED_STRIDE
# Recipes derive more seeds from train.seed (uniform_soup's member i trains with seed + i),
# so replicates shifted by 1 would share models: replicate 1's SFT would be the main run's
# second soup member. A stride far above any member count keeps every replicate's seeds apart.
SEED_STRIDE = 10_007


def seed_config(cfg: RunConfig, k: int) -> RunConfig:
    """The run's k-th seed replicate: every seed that shapes training (train, disperse, the
    run's own) shifted by k * SEED_STRIDE, the same data, items and settings; the base is not
    scored again (it does not depend on the seed), and the replicate has no replicates or
    report."""
    from dtmerge.evaluate.stage import VARIANT_KEYWORDS

    data = cfg.model_dump(mode="json")
    data.update(name=f"seed{k}", runs_dir=str(Path(cfg.run_dir) / SEEDS_DIR), seeds=1,
                seed=cfg.seed + k * SEED_STRIDE)
    data["train"]["seed"] = cfg.train.seed + k * SEED_STRIDE
    data["disperse"]["seed"] = cfg.disperse.seed + k * SEED_STRIDE
    # named model directories (e.g. the demo's dtm_long, copied into the run) are not trained
    # by the run, so the replicate has none to score
    data["eval"]["variants"] = [v for v in cfg.eval.variants
                                if v in VARIANT_KEYWORDS and v != "base"]
    return RunConfig.model_validate(data)


def _run_seed_replicates(cfg: RunConfig, order: list[str], log) -> None:
    """Seeds 1..cfg.seeds-1 of the run's stages before its report (each a run of its own:
    resumable, skipped when done)."""
    stages = [s for s in order if s != "report"]
    if cfg.seeds == 1 or not stages:
        return
    for k in range(1, cfg.seeds):
        replicate = seed_config(cfg, k)
        log(f"== seed replicate {k + 1} of {cfg.seeds}: {replicate.run_dir}")
        with run_lock(replicate.run_dir):
            _run_stages(replicate, stages, log)

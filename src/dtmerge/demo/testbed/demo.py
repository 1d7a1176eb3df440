"""`dtm demo`: the whole alignment-tax story on the embedded testbed, end to end.

Per seed: build (or reuse) the testbed, run the pipeline (data -> disperse -> train -> merge
-> eval -> report) with K random portions and a uniform merge, plus a second run whose
sub-models train longer ("DTM at SFT's instruction-following level"), evaluated into the main
run as variant `dtm_long`. With several seeds, a summary gives mean and spread per variant.

The summary places every variant on knowledge against instruction following and says, for
each DTM variant, whether it lies above or below the base-SFT interpolation line at its own
instruction-following level: the honest comparison, whichever way it comes out.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

from dtmerge.config import RunConfig, config_from_dict
from dtmerge.rundir import (RunDir, atomic_dir, atomic_write_json, hash_path, read_state_json,
                            rerun_hint)

LINKED_RUNS = "linked_runs.json"  # variant -> the run directory that trained it
LONG_FACTOR = 3  # dtm_long: sub-models see LONG_FACTOR times the epochs of SFT
# Demo training settings per testbed size: LoRA on every linear layer, as in the paper's main
# setting. Rank 32 of hidden 128 leaves enough to train; with full fine-tuning (measured, seed 0)
# the average of four sub-models reached only 0.14-0.20 strict format against SFT's 0.54,
# whatever the training length, while LoRA sub-models merge into SFT's level.
_LORA = {"method": "lora", "lora": {"r": 32, "alpha": 64, "dropout": 0.0,
                                    "target_modules": "all-linear"}}
TRAIN = {
    "tiny": {**_LORA, "lora": {**_LORA["lora"], "r": 8, "alpha": 16}, "num_epochs": 1,
             "max_steps": 4, "batch_size": 8, "learning_rate": 1e-3},
    "small": {**_LORA, "num_epochs": 4, "batch_size": 16, "learning_rate": 4e-3},
}
INTERPOLATION = [0.25, 0.5, 0.75]
MONITOR_EVERY = {"tiny": 2, "small": 50}  # probe interval: ~10 probes over SFT's steps


def recipe_entries(names: list[str] | None, testbed, num_portions: int) -> list[dict] | None:
    """`recipes:` entries for `--recipes` ("all" or a list): sft and dtm always (the demo's
    story), the others with their documented defaults; replay and ewc use the testbed's
    pre-training text (what the base model learnt), never a scored item."""
    if not names:
        return None
    from dtmerge.recipes import RECIPES

    if names == ["all"]:
        names = RECIPES.names()
    text = str(testbed.root / "data" / "pretrain.txt") if testbed.root else None
    params = {"replay": {"text": text}, "ewc": {"text": text},
              "uniform_soup": {"num_models": num_portions}}
    entries = [{"name": "sft"}, {"name": "dtm"}]
    for name in dict.fromkeys(names):
        RECIPES.check(name)  # an unknown name fails here, with close matches
        if name not in ("sft", "dtm"):
            entries.append({"name": name, **params.get(name, {})})
    return entries


def demo_config(testbed, seed: int, size: str, num_portions: int, runs_dir: str,
                long: bool = False, interpolation: list[float] | None = None,
                recipes: list[str] | None = None, train_seeds: int = 1) -> RunConfig:
    """The RunConfig of one demo run (the main one, or the longer-trained DTM with `long`)."""
    # parallel_jobs auto: the testbed's model is small, so on a CPU its jobs run side by side,
    # one thread each (benchmarks/executor_scaling.py: x1.6 on a quiet 2-core machine).
    train = {"warmup_steps": 10, "grad_accum": 1, "max_length": 192, "parallel_jobs": "auto",
             "max_grad_norm": 1.0, "weight_decay": 0.0, "adam_beta2": 0.98, "seed": seed,
             "logging_steps": 20, "save_steps": 100000, **TRAIN[size]}
    if long:
        if train.get("max_steps", -1) > 0:
            train["max_steps"] *= LONG_FACTOR
        train["num_epochs"] *= LONG_FACTOR
        train["sft_baseline"] = False
    tasks = testbed.knowledge_tasks + testbed.reasoning_tasks + testbed.instruction_tasks
    name = f"demo-{size}-seed{seed}-k{num_portions}" + ("-long" if long else "")
    entries = None if long else recipe_entries(recipes, testbed, num_portions)
    extra = {"recipes": entries} if entries else {}
    return config_from_dict({**extra,
        "name": name, "runs_dir": runs_dir, "seed": seed, "seeds": 1 if long else train_seeds,
        "model": {"path": str(testbed.base_model), "dtype": "float32"},
        "data": {"path": str(testbed.data), "format": "alpaca", "seed": seed},
        "disperse": {"strategy": "random", "num_portions": num_portions, "seed": seed},
        "train": train,
        "merge": {"method": "linear"},
        "eval": {"tasks": tasks, "include_path": [str(testbed.tasks_dir)], "batch_size": 32,
                 "parallel_jobs": "auto",
                 # The long run is not evaluated itself: its merge is scored in the main run.
                 "device": "cpu", "variants": ["base", "dtm"] if long else
                 ["base", "sft", "dtm", "dtm_long", "interpolation", "best"],
                 "interpolation": interpolation or INTERPOLATION},
        "report": {"knowledge_tasks": testbed.knowledge_tasks + testbed.reasoning_tasks,
                   "instruction_tasks": testbed.instruction_tasks},
        # The main run trains with the knowledge monitor on: probe curves, alerts and the
        # best step kept as sft_best (scored through eval.variants "best").
        "monitor": {"enabled": not long, "every_steps": MONITOR_EVERY[size],
                    "probe_tasks": testbed.knowledge_tasks, "probe_size": 100},
    }, source="dtm demo")


def _copy_model(src: Path, dst: Path) -> None:
    """Copy the long run's merged model into the main run (only when it changed)."""
    if dst.exists() and hash_path(dst) == hash_path(src):
        return
    with atomic_dir(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def run_demo_seed(seed: int, size: str, num_portions: int, runs_dir: str,
                  cache_dir: str | None = None, interpolation: list[float] | None = None,
                  log=print, recipes: list[str] | None = None, train_seeds: int = 1) -> dict:
    """One seed of the demo; returns its scores per variant and timings."""
    from dtmerge.pipeline import run_pipeline
    from dtmerge.demo.testbed.build import build_testbed

    start = time.perf_counter()
    testbed = build_testbed(seed, size, cache_dir, log=log)
    built = time.perf_counter()
    long_cfg = demo_config(testbed, seed, size, num_portions, runs_dir, long=True)
    long_run = run_pipeline(long_cfg, stages=["data", "disperse", "train", "merge"], log=log)
    cfg = demo_config(testbed, seed, size, num_portions, runs_dir,
                      interpolation=interpolation, recipes=recipes, train_seeds=train_seeds)
    _copy_model(long_run.model("dtm"), RunDir(cfg.run_dir).model("dtm_long"))
    # The report's timing table lists the long run's jobs too (report/sections/run.py).
    atomic_write_json(Path(cfg.run_dir) / LINKED_RUNS, {"dtm_long": str(long_run.root)})
    run = run_pipeline(cfg, log=log)
    scores = collect_scores(run)
    replicates = {k: collect_scores(RunDir(d)) for k, d in replicate_dirs(run).items()}
    return {"seed": seed, "run_dir": str(run.root), "scores": scores, "gaps": line_gaps(run),
            "train_seed_scores": replicates,
            "recipe_seconds": recipe_seconds(run),
            "testbed": {k: v for k, v in testbed.info.items() if not isinstance(v, dict)},
            "seconds": {"testbed": round(built - start, 1),
                        "total": round(time.perf_counter() - start, 1)}}


def replicate_dirs(run: RunDir) -> dict[int, Path]:
    """Training-seed replicate k -> its run directory (`seeds: N` writes <run>/seeds/seed<k>)."""
    out = {}
    for d in sorted((run.root / "seeds").glob("seed*")):
        k = d.name.removeprefix("seed")
        if k.isdigit() and (d / "eval").is_dir():
            out[int(k)] = d
    return out


def train_seed_results(result: dict) -> list[dict]:
    """One world's run as one result per training seed (the main run is seed offset 0), for
    `summarise`: the spread is then the training seeds'. The line gaps and recipe times are
    the main run's report's only (replicates have no report), so those cells rest on one seed."""
    main = {k: result[k] for k in ("gaps", "recipe_seconds") if k in result}
    return [{"scores": result["scores"], **main}] + [
        {"scores": scores} for _, scores in sorted(result.get("train_seed_scores", {}).items())]


def collect_scores(run: RunDir) -> dict[str, dict[str, float]]:
    """variant -> {knowledge, reasoning, format, format_loose, correct, style} from
    run/eval/*.json."""
    out: dict[str, dict[str, float]] = {}
    for path in sorted((run.root / "eval").glob("*.json")):
        result = read_state_json(path, rerun_hint(f"dtm eval {run.root}"))
        if not isinstance(result, dict) or "tasks" not in result:
            continue  # e.g. bias.json
        row = {}
        for task, r in result["tasks"].items():
            if r.get("category") in ("knowledge", "reasoning"):
                row[r["category"]] = r["score"]
            elif r.get("category") == "instruction":
                row.update({m: r["metrics"].get(m)
                            for m in ("format", "format_loose", "correct", "style")})
        out[result.get("variant", path.stem)] = row
    return out


def line_gaps(run: RunDir) -> dict[str, float]:
    """DTM variant -> its distance to the base-SFT interpolation line, as the report computed
    it (results/analysis.distance_to_line): one definition, so the demo summary and the report
    never disagree. Variants the line cannot be read at are left out."""
    path = run.root / "report" / "report.json"
    if not path.exists():
        return {}
    report = read_state_json(path, rerun_hint(f"dtm report {run.root}"))
    tradeoff = report.get("tradeoff") or {}
    gaps = {name: v["distance"] for name, v in (tradeoff.get("verdicts") or {}).items()
            if v.get("distance") is not None}
    recipes = (report.get("recipes") or {}).get("points") or {}  # the recipes section's
    gaps.update({name: v["distance_to_line"] for name, v in recipes.items()
                 if v.get("distance_to_line") is not None and name not in gaps})
    return gaps


def recipe_seconds(run: RunDir) -> dict[str, float]:
    """Recipe -> wall seconds of its jobs, as the report's recipes section counted them."""
    path = run.root / "report" / "report.json"
    report = read_state_json(path, rerun_hint(f"dtm report {run.root}"), default={})
    costs = (report.get("recipes") or {}).get("cost") or {}
    return {name: c["seconds"] for name, c in costs.items() if c.get("seconds") is not None}


def _spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n_seeds": len(values)}


def summarise(results: list[dict]) -> dict:
    """Mean and spread (sample std) over seeds of every score of every variant."""
    variants = sorted({v for r in results for v in r["scores"]}, key=_variant_order)
    table = {}
    for v in variants:
        row = {}
        metrics = sorted({m for r in results for m in r["scores"].get(v, {})})
        for m in metrics:
            vals = [r["scores"][v][m] for r in results
                    if r["scores"].get(v, {}).get(m) is not None]
            if vals:
                row[m] = _spread(vals)
        for key, column in (("gaps", "gap_to_line"), ("recipe_seconds", "seconds")):
            values = [r[key][v] for r in results if v in r.get(key, {})]
            if values:
                row[column] = _spread(values)
        table[v] = row
    return table


def _variant_order(name: str) -> tuple:
    fixed = ["base", "sft", "dtm", "dtm_long"]
    return (fixed.index(name), 0.0) if name in fixed else (len(fixed), name)


def format_table(table: dict) -> str:
    cols = ["knowledge", "reasoning", "format", "format_loose", "correct", "style",
            "gap_to_line"]
    if any("seconds" in row for row in table.values()):  # runs with recipes: their job time
        cols.append("seconds")
    most = max((cell["n_seeds"] for row in table.values() for cell in row.values()), default=1)
    lines = ["variant      " + "".join(f"{c:>16}" for c in cols)]
    for v, row in table.items():
        cells = []
        for c in cols:
            cell = row.get(c)
            empty = _why_no_gap(v) if c == "gap_to_line" else "-"
            if not cell:
                cells.append(f"{empty:>16}")
            elif cell["n_seeds"] < most or most == 1:  # no spread to show: say on how many
                cells.append(f"{cell['mean']:>9.3f}" + (f" (n={cell['n_seeds']})"
                                                        if most > 1 else "       "))
            else:
                cells.append(f"{cell['mean']:>9.3f} ±{cell['std']:.3f}")
        lines.append(f"{v:<13}" + "".join(f"{c:>16}" for c in cells))
    lines.append("gap_to_line: 'the line' = a point of the line itself (base, SFT, interp_t); "
                 "'off the line' = instruction following outside the line's range, see the report")
    if most > 1:
        lines.append("(n=k): that cell rests on k seeds (the base is scored once; best "
                     "checkpoints exist only where an earlier step beat the final one; gaps "
                     "and times come from the main run's report)")
    return "\n".join(lines)


def _why_no_gap(variant: str) -> str:
    """What a missing gap_to_line means, instead of a bare dash."""
    if variant in ("base", "sft") or variant.startswith("interp_"):
        return "the line"
    return "off the line"


def run_demo(seed: int = 0, worlds: int = 1, size: str = "small", num_portions: int = 4,
             runs_dir: str = "runs", cache_dir: str | None = None,
             interpolation: list[float] | None = None, log=print,
             recipes: list[str] | None = None, train_seeds: int = 1) -> dict:
    """Run the demo for `worlds` consecutive testbed seeds from `seed`; write and print the
    summary.

    Args:
        seed, worlds: the first testbed seed and how many consecutive ones to run.
        train_seeds: training seeds of every recipe within each run (the run's `seeds`).
        size: testbed size ("small" for the demo, "tiny" for tests).
        num_portions: K.
        runs_dir: parent of the run directories and of the summary JSON.
        cache_dir: testbed cache (default: $DTMERGE_CACHE_DIR/testbed or ~/.cache/dtmerge/testbed).
        interpolation: base-SFT coefficients of the trade-off line (default 0.25, 0.5, 0.75).
        log: progress printer.
        recipes: recipe names (or ["all"]) trained and scored beside SFT and DTM.

    Returns:
        {"per_seed": [...], "summary": {variant: {metric: {mean, std, n_seeds}}}, "seconds"}.
    """
    start = time.perf_counter()
    results = [run_demo_seed(s, size, num_portions, runs_dir, cache_dir, interpolation, log,
                             recipes, train_seeds) for s in range(seed, seed + worlds)]
    # one world with training seeds: the spread is the training seeds'; several worlds: the
    # worlds' (each world's main run)
    by_train_seed = worlds == 1 and train_seeds > 1
    summary = {"size": size, "num_portions": num_portions, "seeds": [r["seed"] for r in results],
               "train_seeds": train_seeds, "per_seed": results,
               "summary": summarise(train_seed_results(results[0]) if by_train_seed
                                    else results),
               "seconds": round(time.perf_counter() - start, 1)}
    tag = "-recipes" if recipes else ""
    tag += f"-train{train_seeds}" if train_seeds > 1 else ""
    out = Path(runs_dir) / f"demo-{size}-k{num_portions}-seeds{seed}-{seed + worlds - 1}{tag}.json"
    atomic_write_json(out, summary)
    over = (f"training seeds {seed}..{seed + train_seeds - 1} of world {seed}" if by_train_seed
            else f"seed(s) {summary['seeds']}")
    log(f"\nDemo summary over {over} (mean ± std; gap_to_line: mean of "
        "knowledge and reasoning above (+) or below (-) the base-SFT interpolation line at the "
        "same instruction-following (format) score, as in each report)")
    log(format_table(summary["summary"]))
    log(f"summary: {out}   reports: " + ", ".join(f"{r['run_dir']}/report" for r in results))
    return summary

"""`dtm frontier RUN_DIR`: build, score and choose among merged candidates of a run.

Order of work: the grid (`grid.py`) -> a cheap first pass of every candidate on a subsample of
validation items, where the decision's own tests leave out what the subsample already excludes
and keep up to `frontier.prune_keep` (`select.py`) -> the full
validation pass of the survivors -> the one decision (`dtmerge.decision`, the same the report's
Answer makes) over the candidates and every scored variant of the run -> its choice scored on
test items when it is a frontier candidate.
Each merged model is deleted once its pass is scored (unless `frontier.keep_models`); a
survivor is merged again for its next pass, since merging costs far less than scoring.
Everything the report needs is written to frontier/frontier.json.
"""

from __future__ import annotations

import time

from dtmerge.decision import decide_run
from dtmerge.decision.inputs import decide_variants, group_seeds, line_points, run_variants
from dtmerge.errors import ConfigError
from dtmerge.evaluate.split import record_split
from dtmerge.frontier.grid import Candidate, build_grid
from dtmerge.frontier.items import ItemsOnly, pass_items, points, restrict, run_items, run_split
from dtmerge.frontier.score import (FrontierContext, drop_model, is_scored, premerge,
                                     score_candidate)
from dtmerge.frontier.select import Screened, pareto_front, screen
from dtmerge.results.analysis import TradeoffPoint, interpolation_line
from dtmerge.results.records import ReportError, VariantResult, load_eval_dir, load_eval_file
from dtmerge.rundir import RunDir, atomic_write_json

RESULT_FILE = "frontier.json"


def _score_pass(ctx: FrontierContext, grid: list[Candidate], which: str,
                items: dict[str, list]) -> dict[str, VariantResult]:
    """Score every candidate of `grid` on one pass; their results on that pass's items."""
    results = {}
    premerge(ctx, [c for c in grid if not is_scored(ctx, c, which, items)])
    for cand in grid:
        path = score_candidate(ctx, cand, which, items)
        drop_model(ctx, cand)
        results[cand.name] = load_eval_file(path, cand.name)
    return results


def _prune(cfg, run: RunDir, grid: list[Candidate], first: dict[str, VariantResult],
           items: dict[str, list]) -> Screened:
    """The first pass's survivors: the decision's tests on the subsample `items`, the run's
    own variants (the line, SFT, seed replicates) restricted to the same items."""
    only = ItemsOnly({t: frozenset(map(str, ids)) for t, ids in items.items()})
    variants = {}
    for name, result in run_variants(run).items():
        try:
            variants[name] = restrict(result, only)
        except ReportError:
            continue  # a variant without items of some task here cannot be compared
    variants.update(first)
    names = [c.name for c in grid]
    made = decide_variants(variants, line_points(run, list(group_seeds(variants))), cfg.answer,
                           cfg.report.knowledge_tasks, cfg.report.instruction_tasks,
                           cfg.report.bootstrap_samples, cfg.seed)
    verdicts = [] if made is None else [v for v in made[0].candidates if v.name in names]
    return screen(verdicts, names, cfg.frontier.prune_keep, cfg.answer.margin)


def frontier_stage(cfg, run: RunDir, log=print) -> dict:
    """Run the frontier of `run` with `cfg.frontier`; returns (and writes) its summary."""
    started = time.time()
    split = run_split(cfg)
    record_split(cfg.eval, run.root / "eval")  # the report presents test items from now on
    items = run_items(run)
    ctx = FrontierContext.open(cfg, run, log)
    grid = build_grid(cfg, len(ctx.subs))
    fc = cfg.frontier
    log(f"[frontier] {len(grid)} candidates: " + ", ".join(c.name for c in grid))
    val_items = pass_items(split, items, "validation")
    survivors, first, screened = grid, {}, None
    if fc.prune_fraction is not None and fc.prune_fraction < 1.0 and len(grid) > fc.prune_keep:
        prune_items = pass_items(split, items, "prune", fc.prune_fraction)
        first_results = _score_pass(ctx, grid, "prune", prune_items)
        first = points(first_results, prune_items, cfg)
        screened = _prune(cfg, run, grid, first_results, prune_items)
        survivors = [c for c in grid if c.name in screened.survivors]
        log(f"[frontier] first pass on {sum(map(len, prune_items.values()))} validation items "
            f"keeps {len(survivors)}: {', '.join(c.name for c in survivors) or 'none'}")
        for name, why in screened.why.items():
            if why.startswith("left out: beyond"):
                log(f"[frontier]   {name} {why}")
    validation = points(_score_pass(ctx, survivors, "validation", val_items), val_items, cfg)
    reference = points({n: v for n, v in load_eval_dir(run.root / "eval").items()
                        if n in ("base", "sft") or n.startswith("interp_")}, val_items, cfg)
    rd = decide_run(run, cfg.answer, cfg.report.knowledge_tasks, cfg.report.instruction_tasks,
                    cfg.report.bootstrap_samples, cfg.seed, cfg.eval.split_seed,
                    extra={c.name: load_eval_file(ctx.eval_path(c.name, "validation"), c.name)
                           for c in survivors})
    if rd is None:
        raise ConfigError("dtm frontier: no decision can be made on this run's results (it "
                          "needs an instruction-following task and a knowledge or held-out loss "
                          "task scored for SFT); see `dtm report`")
    chosen = rd.decision.choice
    log(f"[frontier] {rd.decision.headline}")
    by_name = {c.name: c for c in grid}
    test_path = None
    if chosen in by_name:  # a frontier candidate: scored once on test items, now
        test_path = score_candidate(ctx, by_name[chosen], "test", pass_items(split, items, "test"))
        drop_model(ctx, by_name[chosen])
    summary = _summary(cfg, grid, first, validation, reference, rd, test_path, started, screened)
    atomic_write_json(run.root / "frontier" / RESULT_FILE, summary)
    log(f"[frontier] {run.root / 'frontier' / RESULT_FILE} ({summary['seconds']} s)")
    return summary


def _summary(cfg, grid, first, validation, reference, rd, test_path, started,
             screened: Screened | None) -> dict:
    # "pareto": on the accuracy plane among the candidates AND the references (a candidate
    # that SFT or a line point dominates is not on the front); the decision reads every plane.
    front = set(pareto_front({**validation, **reference}))
    verdicts = {v.name: v for v in rd.decision.candidates}

    def pt(p: TradeoffPoint | None) -> dict | None:
        return None if p is None else {"knowledge": p.knowledge, "instruction": p.instruction,
                                       "knowledge_se": p.knowledge_se}

    chosen = rd.decision.choice
    return {
        "split": {"validation_fraction": cfg.eval.validation_fraction,
                  "seed": cfg.eval.split_seed},
        "settings": cfg.frontier.model_dump(mode="json"),
        "candidates": [{"name": c.name, **c.spec(), "prune": pt(first.get(c.name)),
                        "first_pass": screened.why.get(c.name) if screened else None,
                        "validation": pt(validation.get(c.name)),
                        "pareto": c.name in front,
                        "qualified": bool(verdicts[c.name].qualified) if c.name in verdicts
                        else False} for c in grid],
        "reference_validation": {n: pt(p) for n, p in reference.items()},
        "line_validation": [p.variant for p in interpolation_line(list(reference.values()))],
        "chosen": {"name": chosen, "why": rd.decision.headline, "kind": rd.decision.kind,
                   "frontier_candidate": test_path is not None,
                   "target": cfg.answer.model_dump(mode="json")["target"],
                   "test_eval": (str(test_path.relative_to(test_path.parents[2]))
                                 if test_path is not None else None)},
        "decision": rd.to_dict(),
        "seconds": round(time.time() - started, 1),
    }

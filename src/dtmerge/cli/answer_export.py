"""`dtm export RUN answer --out DIR`: ship what the decision recommends, with its reasons.

The recommendation is the report's Answer (`dtmerge.decision`, recomputed from the run's files
and its config, so the export can never ship something else). A run variant (dtm, a recipe,
an interpolation point, sft) is exported as `dtm export RUN VARIANT` does; a frontier candidate
is merged again from its recorded spec. `decision.json` beside the weights says why: the target,
the planes, every candidate's intervals and p-values on validation items, and the choice's
numbers on test items. Written into a staging directory and renamed: all or nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DECISION_FILE = "decision.json"


def export_answer(run_dir: str | Path, dest: str | Path, adapter_only: bool = False,
                  log=print) -> tuple[str, Path]:
    """Export the decision's choice of the run at `run_dir` to `dest`; (choice, dest)."""
    from dtmerge.cli.export import export_variant
    from dtmerge.config import load_config
    from dtmerge.decision import confirm, decide_run
    from dtmerge.decision.inputs import frontier_results
    from dtmerge.errors import DtmError
    from dtmerge.frontier import export_candidate
    from dtmerge.rundir import RunDir, atomic_write_json

    run, dest = RunDir(run_dir), Path(dest)
    if not (run.root / "config.yaml").is_file():
        raise DtmError(f"{run.root} is not a run directory (no config.yaml)")
    if dest.exists():
        raise DtmError(f"{dest} already exists: choose a new --out directory (nothing is overwritten)")
    cfg = load_config(run.root / "config.yaml")
    rd = decide_run(run, cfg.answer, cfg.report.knowledge_tasks, cfg.report.instruction_tasks,
                    cfg.report.bootstrap_samples, cfg.seed, cfg.eval.split_seed)
    if rd is None:
        raise DtmError(f"{run.root}: no decision can be made (it needs eval results with an "
                       "instruction-following task and a knowledge or held-out loss task); run "
                       f"`dtm eval {run.root}` first")
    choice = rd.decision.choice
    if choice == "base":
        raise DtmError(f"the decision is the base model itself ({rd.decision.headline}); ship "
                       f"{cfg.model.path} as it is")
    log(rd.decision.headline)
    record = {**rd.to_dict(), "confirmation": confirm(run, rd, cfg.report.bootstrap_samples,
                                                      cfg.seed).to_dict(),
              "run": str(run.root.resolve())}
    staging = dest.parent / f".{dest.name}.answer-partial"
    shutil.rmtree(staging, ignore_errors=True)  # ours, left by a killed export
    if choice in frontier_results(run, "validation") and not run.eval_file(choice).is_file():
        export_candidate(cfg, run, choice, out=staging, log=log)
    else:
        export_variant(run.root, choice, staging, adapter_only)
    atomic_write_json(staging / DECISION_FILE, record)
    os.replace(staging, dest)
    return choice, dest

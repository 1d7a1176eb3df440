"""Writing a run's models out as standalone, shippable directories (`dtm export`).

`export_variant`: any model under runs/NAME/models/ (dtm, sft, sft_best, interp_0.5, a
recipe's output) as a full Hugging Face model directory with its tokenizer and model card
(README.md, see `dtmerge.publish.card`); a LoRA adapter is merged into the run's base model
first (PEFT's merge_and_unload) unless `adapter_only`.

`export_answer`: what the run's decision recommends (`dtmerge.decision`, recomputed from the
run's files and config, so the export can never ship something else than the report's
Answer): a run variant as above, or a frontier candidate merged again from its recorded spec,
with `decision.json` beside the weights (the target, the planes, every candidate's intervals
and p-values on validation items, the choice's numbers on test items). Staged and renamed:
all or nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DECISION_FILE = "decision.json"


def export_answer(run_dir: str | Path, dest: str | Path, adapter_only: bool = False,
                  log=print) -> tuple[str, Path]:
    """Export the decision's choice of the run at `run_dir` to `dest`; (choice, dest)."""
    from dtmerge.rundir import load_run_config
    from dtmerge.decision import confirm, decide_run
    from dtmerge.decision.inputs import frontier_results
    from dtmerge.errors import DtmError
    from dtmerge.frontier import export_candidate
    from dtmerge.publish.card import write_model_card
    from dtmerge.rundir import RunDir, atomic_write_json

    run, dest = RunDir(run_dir), Path(dest)
    if not (run.root / "config.yaml").is_file():
        raise DtmError(f"{run.root} is not a run directory (no config.yaml)")
    if dest.exists():
        raise DtmError(f"{dest} already exists: choose a new --out directory (nothing is overwritten)")
    cfg = load_run_config(run.root)
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
        write_model_card(run.root, choice, staging)  # README.md: the Hub card
    else:
        export_variant(run.root, choice, staging, adapter_only)
    atomic_write_json(staging / DECISION_FILE, record)
    os.replace(staging, dest)
    return choice, dest


def export_variant(run_dir: str | Path, variant: str, dest: str | Path, adapter_only: bool = False) -> Path:
    """Write `variant` of the run at `run_dir` to `dest` (atomically); returns `dest`.

    Raises:
        DtmError: no such run or variant, or `dest` already exists.
    """
    from dtmerge.rundir import load_run_config
    from dtmerge.errors import DtmError
    from dtmerge.rundir import RunDir, atomic_dir

    run = RunDir(run_dir)
    src, dest = run.model(variant), Path(dest)
    if not (run.root / "config.yaml").is_file():
        raise DtmError(f"{run.root} is not a run directory (no config.yaml)")
    if not src.is_dir():
        have = sorted(p.name for p in run.models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if run.models_dir.is_dir() else []
        raise DtmError(f"no model '{variant}' in {run.models_dir}; available: {', '.join(have) or 'none'}")
    if dest.exists():
        raise DtmError(f"{dest} already exists: choose a new --out directory (nothing is overwritten)")
    is_adapter = (src / "adapter_config.json").is_file()
    with atomic_dir(dest) as tmp:
        if adapter_only or not is_adapter:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        else:
            from dtmerge.evaluate.weights import load_variant
            from dtmerge.models import load_tokenizer

            cfg = load_run_config(run.root)
            load_variant(cfg, src).save_pretrained(tmp)
            tokenizer = src if (src / "tokenizer_config.json").is_file() else None
            if tokenizer is not None:
                from transformers import AutoTokenizer

                AutoTokenizer.from_pretrained(str(tokenizer)).save_pretrained(tmp)
            else:
                load_tokenizer(cfg.model).save_pretrained(tmp)
        from dtmerge.publish import write_model_card

        write_model_card(run.root, variant, tmp)  # README.md: the Hub card with the evidence
    return dest

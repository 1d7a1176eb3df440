"""Stage 6 of the pipeline: write report/report.md and a standalone report/report.html."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from dtmerge.config import RunConfig
from dtmerge.report.build import build_report
from dtmerge.report.document import Table, table_to_text, to_html, to_markdown
from dtmerge.report.runinfo import monitor_file, monitored_models
from dtmerge.rundir import RunDir, atomic_dir, hash_file, hash_obj, run_job


def report_inputs(run: RunDir) -> dict[str, str]:
    """Hashes of every file the report reads whose change must redo it."""
    inputs = {}
    for p in sorted((run.root / "eval").glob("*.json")):
        run.require_finished(f"eval:{p.stem}", p)  # a killed evaluation is not a result
        inputs[f"eval/{p.name}"] = hash_file(p)
    for p in sorted((run.root / "seeds").glob("seed*/eval/*.json")):  # the seed replicates
        inputs[str(p.relative_to(run.root))] = hash_file(p)
    frontier = run.root / "frontier" / "frontier.json"  # the frontier section's input
    if frontier.is_file():
        inputs["frontier/frontier.json"] = hash_file(frontier)
    for name in monitored_models(run):
        path = monitor_file(run, name)
        if path is not None:
            inputs[str(path.relative_to(run.root))] = hash_file(path)
    if (run.root / "recipes.json").exists():  # what each recipe is (the recipes section)
        inputs["recipes.json"] = hash_file(run.root / "recipes.json")
    if (run.root / "linked_runs.json").exists():  # the timings of runs linked in (the demo's)
        inputs["linked_runs.json"] = hash_file(run.root / "linked_runs.json")
    return inputs


def write_report(run: RunDir, knowledge: list[str] | None = None, instruction: list[str] | None = None,
                 n_boot: int = 2000, seed: int = 0, answer=None, split_seed: int = 0) -> dict:
    """Build the report of `run` and write it atomically into `run/report/`.

    Writes report.md (with plots/*.png beside it), report.html (plots embedded, no other
    file needed), report.json (the numbers) and summary.txt (the terminal table).

    Returns:
        {"markdown": path, "html": path, "json": path, "summary": text, "data": dict}
    """
    report = build_report(run, knowledge, instruction, n_boot=n_boot, seed=seed, answer=answer,
                          split_seed=split_seed)
    summary = table_to_text(report.summary)
    if report.answer:
        summary += "\n\nAnswer\n" + "\n".join(textwrap.fill(s, 100, subsequent_indent="  ")
                                              for s in report.answer)
        table = (report.data.get("answer") or {}).get("table")
        if table:
            summary += "\n\n" + table_to_text(Table(table["headers"], table["rows"]))
    with atomic_dir(run.report_dir) as tmp:
        images = [b for s in report.sections for b in s.blocks if hasattr(b, "png")]
        if images:
            (tmp / "plots").mkdir()
            for img in images:
                (tmp / "plots" / img.name).write_bytes(img.png)
        (tmp / "report.md").write_text(to_markdown(report.title, report.sections))
        (tmp / "report.html").write_text(to_html(report.title, report.sections))
        (tmp / "report.json").write_text(json.dumps(report.data, indent=2, default=str) + "\n")
        (tmp / "summary.txt").write_text(summary + "\n")
    out = run.report_dir
    return {"markdown": str(out / "report.md"), "html": str(out / "report.html"),
            "json": str(out / "report.json"), "summary": summary, "data": report.data}


def report_code() -> str:
    """A hash of the report's own source: a report written by an older dtmerge is rewritten
    by a newer one, not skipped as up to date (the version string does not change between
    commits)."""
    package = Path(__file__).parent
    return hash_obj({str(f.relative_to(package)): f.read_text()
                     for f in sorted(package.rglob("*.py"))})


def decision_code() -> str:
    """A hash of the decision's source (the Answer is rewritten when the rule changes)."""
    package = Path(__file__).parents[1] / "decision"
    return hash_obj({f.name: f.read_text() for f in sorted(package.glob("*.py"))})


def report_stage(cfg: RunConfig, run: RunDir, log=print) -> dict:
    """Pipeline stage "report": the alignment-tax report of a run, as manifest job "report".

    Skipped when the evaluation files, monitor curves, `cfg.report` and the report's code are
    unchanged since the last report. Logs to MLflow when `cfg.tracking.mlflow` is on, to W&B
    when `cfg.tracking.wandb` is.

    Returns:
        {"markdown": path, "html": path, "json": path, "summary": text}; "summary" is the
        terminal table (scores per variant, DTM minus SFT), which `run_pipeline` prints.
    """
    inputs = report_inputs(run)
    fingerprint = hash_obj({"inputs": inputs, "report": cfg.report.model_dump(mode="json"),
                            "answer": cfg.answer.model_dump(mode="json"),
                            "split_seed": cfg.eval.split_seed, "seed": cfg.seed,
                            "code": report_code(), "decision_code": decision_code()})
    result: dict = {}

    def work() -> dict:
        result.update(write_report(run, cfg.report.knowledge_tasks, cfg.report.instruction_tasks,
                                   n_boot=cfg.report.bootstrap_samples, seed=cfg.seed,
                                   answer=cfg.answer, split_seed=cfg.eval.split_seed))
        return {"outputs": [result["markdown"], result["html"]]}

    run_job(run, "report", fingerprint, work, inputs=inputs, log=log)
    out = run.report_dir
    summary = result.get("summary") or _read(out / "summary.txt")
    # The summary table is returned, not logged: run_pipeline prints every stage's "summary".
    log(f"report: {out / 'report.md'}\n        {out / 'report.html'}")
    if cfg.tracking.mlflow:
        from dtmerge.report.tracking import log_run

        ids = log_run(cfg, run)
        log(f"mlflow: logged run {ids['parent_run_id']} to {ids['tracking_uri']}")
    if cfg.tracking.wandb:
        from dtmerge.report.tracking import log_run_wandb

        ids = log_run_wandb(cfg, run)
        log(f"wandb: logged run {ids['parent_run_id']} to project {ids['project']}")
    return {"markdown": str(out / "report.md"), "html": str(out / "report.html"),
            "json": str(out / "report.json"), "summary": summary}


def _read(path: Path) -> str:
    try:
        return path.read_text().rstrip("\n")
    except OSError:
        return ""

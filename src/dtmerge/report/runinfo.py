"""Reading what a run writes while it trains: manifest jobs, progress and monitor curves.

Used by the report (timings, monitor plots), `dtm watch` and MLflow tracking. Files may be
half-written while a run is live, so every reader here tolerates a truncated last line or a
missing file instead of failing.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from dtmerge.rundir import RunDir


def read_json(path: Path) -> dict | None:
    """A JSON object, or None when the file is missing or mid-write."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_monitor(path: Path) -> list[dict[str, Any]]:
    """The monitor's JSONL lines (step, probe_acc, train_loss, heldout_loss, ratio, alert?).

    A truncated or non-JSON line (the writer may be mid-line) is skipped.
    """
    rows = []
    try:
        text = path.read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _candidate_dirs(run: RunDir, model: str) -> list[Path]:
    # The monitor writes <run>/monitor/<job>/; the trainer keeps live files in
    # models/.work/<job>/ and copies them into models/<job>/ when the model is saved.
    return [run.root / "monitor" / model, run.models_dir / ".work" / model, run.model(model)]


def _newest(paths: list[Path]) -> Path | None:
    existing = [p for p in paths if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime) if existing else None


def monitor_file(run: RunDir, model: str) -> Path | None:
    """The most recently written monitor.jsonl of one model, wherever it lives."""
    return _newest([d / "monitor.jsonl" for d in _candidate_dirs(run, model)])


def monitor_summary(run: RunDir, model: str) -> dict | None:
    """The monitor's end-of-job summary (peak, onset, alert, best step), if written."""
    path = _newest([d / "monitor_summary.json" for d in _candidate_dirs(run, model)])
    return read_json(path) if path else None


def progress_of(run: RunDir, model: str) -> dict | None:
    """step / max_steps / loss of a training job (live file first, then the saved copy)."""
    path = _newest([d / "progress.json" for d in _candidate_dirs(run, model)[1:]])
    return read_json(path) if path else None


def monitored_models(run: RunDir) -> list[str]:
    names: set[str] = set()
    for pattern in ("monitor/*/monitor.jsonl", "models/*/monitor.jsonl", "models/.work/*/monitor.jsonl"):
        names.update(p.parent.name for p in run.root.glob(pattern))
    return sorted(names)


def monitor_curves(run: RunDir) -> dict[str, list[dict[str, Any]]]:
    """model name -> monitor lines, for every model with a monitor.jsonl."""
    curves = {}
    for name in monitored_models(run):
        path = monitor_file(run, name)
        rows = read_monitor(path) if path else []
        if rows:
            curves[name] = rows
    return curves


def series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one numeric key, skipping rows without a finite value."""
    steps, values = [], []
    for i, row in enumerate(rows):
        v = row.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            steps.append(float(row.get("step", i)))
            values.append(float(v))
    return steps, values


def last_alert(rows: list[dict], summary: dict | None = None) -> str | None:
    """The most recent alert: from the monitor's summary (knowledge fell more than the
    threshold below its peak), else an 'alert' key on a monitor line."""
    if summary and summary.get("alert"):
        return (f"step {summary.get('alert_step')}: probe fell below its peak "
                f"({_num(summary.get('peak_acc'))} @ step {summary.get('peak_step')}); "
                f"best step {summary.get('best_step')}")
    for row in reversed(rows):
        alert = row.get("alert")
        if isinstance(alert, str) and alert:
            return f"step {row.get('step', '?')}: {alert}"
        if alert is True or row.get("event") == "alert":
            return f"step {row.get('step', '?')}: {row.get('message') or 'knowledge fell below its peak'}"
    return None


def _num(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) else str(x)


def model_name_of_job(job: str) -> str:
    """Manifest job names may be namespaced ('train/sub_0', 'train:sft'); the model dir is
    the last part."""
    for sep in ("/", ":"):
        job = job.rsplit(sep, 1)[-1]
    return job


def job_rows(run: RunDir, now: float | None = None) -> list[dict[str, Any]]:
    """One row per manifest job: name, status, elapsed seconds, progress, error.

    Running jobs get their elapsed time from `started`; finished ones use `seconds`.
    Progress comes from the trainer's progress.json (step, max_steps, loss) when present.
    """
    now = time.time() if now is None else now
    manifest = run.read_manifest()
    rows = []
    for name, job in (manifest.get("jobs") or {}).items():
        status = job.get("status", "?")
        if status == "running" and isinstance(job.get("started"), (int, float)):
            elapsed = now - job["started"]
        else:
            elapsed = job.get("seconds")
        # Only training jobs have a progress.json (eval:sft must not show sft's training).
        is_training = name.startswith("train") or ":" not in name and "/" not in name
        progress = progress_of(run, model_name_of_job(name)) if is_training else None
        rows.append({"job": name, "status": status, "seconds": elapsed,
                     "progress": progress, "error": job.get("error")})
    return rows


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"

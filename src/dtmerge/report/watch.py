"""The live terminal view behind `dtm watch`: jobs, progress and the monitor's curves.

Plain ANSI escape codes (clear screen, colours) are enough for a redraw every few seconds, so
there is no curses or rich dependency. Every frame is rebuilt from the run directory's files.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime

from dtmerge.errors import DtmError
from dtmerge.report.runinfo import (
    format_seconds, job_rows, last_alert, monitor_curves, monitor_summary, series,
)
from dtmerge.rundir import RunDir

SPARK = "▁▂▃▄▅▆▇█"
CLEAR = "\x1b[H\x1b[2J"
_COLOURS = {"done": "32", "running": "33", "failed": "31"}


def sparkline(values: list[float], width: int = 30) -> str:
    """Unicode block sparkline of the last `width` values, scaled to their min..max."""
    values = values[-width:]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        return SPARK[len(SPARK) // 2] * len(values)
    return "".join(SPARK[round((v - lo) / (hi - lo) * (len(SPARK) - 1))] for v in values)


def progress_bar(step: int | None, total: int | None, width: int = 20) -> str:
    if not step or not total or total <= 0:
        return ""
    frac = min(1.0, step / total)
    filled = int(round(frac * width))
    return f"[{'#' * filled}{'-' * (width - filled)}] {step}/{total}"


def _paint(text: str, status: str, colour: bool) -> str:
    code = _COLOURS.get(status)
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text


def render_frame(run: RunDir, colour: bool = False, now: float | None = None) -> str:
    """One frame of the live view as text.

    Raises:
        DtmError: `run` is not a run directory.
    """
    if not run.root.is_dir():
        raise DtmError(f"{run.root} is not a directory: give a run directory (runs/NAME)")
    now = time.time() if now is None else now
    lines = [f"dtm watch {run.root}   {datetime.fromtimestamp(now):%H:%M:%S}"]
    jobs = job_rows(run, now)
    if not jobs and not run.manifest_path.exists():
        lines.append("no manifest.json yet: waiting for `dtm run` to start this run")
    if jobs:
        width = max(12, *(len(j["job"]) for j in jobs))
        lines.append(f"{'JOB':<{width}}  {'STATUS':<8}  {'ELAPSED':>8}  PROGRESS")
        for j in jobs:
            prog = j["progress"] or {}
            bar = progress_bar(prog.get("step"), prog.get("max_steps"))
            loss = prog.get("loss")
            detail = bar + (f"  loss {loss:.4f}" if isinstance(loss, (int, float)) else "")
            if j["status"] == "failed" and j["error"]:
                detail = str(j["error"])[:80]
            status = _paint(f"{j['status']:<8}", j["status"], colour)
            lines.append(f"{j['job']:<{width}}  {status}  {format_seconds(j['seconds']):>8}  {detail}")
    curves = monitor_curves(run)
    if curves:
        width = max(12, *(len(n) for n in curves))
        lines += ["", f"{'MONITOR':<{width}}  {'PROBE ACC':<30}  {'LAST':>5}  {'PEAK':>5}  "
                      f"{'RATIO':>6}  ALERT"]
        for name, rows in curves.items():
            _, acc = series(rows, "probe_acc")
            _, ratio = series(rows, "ratio")
            alert = last_alert(rows, monitor_summary(run, name))
            last = f"{acc[-1]:.3f}" if acc else "-"
            peak = f"{max(acc):.3f}" if acc else "-"
            rat = f"{ratio[-1]:.2f}" if ratio else "-"
            alert_text = _paint(alert, "failed", colour) if alert else "-"
            lines.append(f"{name:<{width}}  {sparkline(acc):<30}  {last:>5}  {peak:>5}  {rat:>6}  {alert_text}")
    return "\n".join(lines)


def watch(run: RunDir, interval: float = 2.0, once: bool = False, out=None) -> int:
    """Redraw the view every `interval` seconds until Ctrl-C (or once with `once`)."""
    out = out or sys.stdout
    colour = hasattr(out, "isatty") and out.isatty()
    if once:
        print(render_frame(run, colour=colour), file=out)
        return 0
    try:
        while True:
            frame = render_frame(run, colour=colour)
            out.write(CLEAR + frame + "\n\n(Ctrl-C to quit)\n")
            out.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        out.write("\n")
        return 0

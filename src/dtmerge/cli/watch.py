"""`dtm watch RUN_DIR`: live terminal view of a run's jobs, progress and monitor curves."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory (runs/NAME)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between redraws (default 2)")
    p.add_argument("--once", action="store_true", help="print one frame and exit")


def run(args: argparse.Namespace) -> int:
    from dtmerge.errors import DtmError
    from dtmerge.report.watch import watch
    from dtmerge.rundir import RunDir

    if args.interval <= 0:
        raise DtmError(f"--interval must be positive, got {args.interval}")
    return watch(RunDir(args.run_dir), interval=args.interval, once=args.once)

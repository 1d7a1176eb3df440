"""`dtm`: a thin command line over dtmerge's stage functions.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`;
they are imported only when invoked so `dtm --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from dtmerge.errors import DtmError

# name -> (module, one-line help). One explicit list.
COMMANDS = {
    "run": ("dtmerge.cli.run", "run every stage of a config (or --dry-run to validate and plan)"),
    "disperse": ("dtmerge.cli.stage", "split the data into K portions"),
    "train": ("dtmerge.cli.stage", "train the K sub-models and the SFT baseline"),
    "merge": ("dtmerge.cli.merge", "merge sub-models (a run dir, or explicit models)"),
    "eval": ("dtmerge.cli.stage", "evaluate every variant of a run"),
    "report": ("dtmerge.cli.stage", "write report.md / report.html for a run"),
    "demo": ("dtmerge.cli.demo", "the offline alignment-tax testbed, end to end"),
    "compare": ("dtmerge.cli.compare", "A/B comparison of two runs or models (CI gate)"),
    "watch": ("dtmerge.cli.watch", "live view of a run's jobs and monitor curves"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtm", description="Disperse-Then-Merge instruction tuning")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the invoked subcommand's module is imported.
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == wanted:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Before torch loads OpenMP: waiting threads sleep instead of spinning, so a busy core
    # slows a job down instead of stalling it (benchmarks/thread_count.py, BENCHMARKS.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser(argv)
    # Overrides (key=value) may come after flags too: `dtm run c.yaml --dry-run train.lr=1`.
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except DtmError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`dtm`: a thin command line over dtmerge's stage functions.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`;
they are imported only when invoked so `dtm --help` stays fast.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys

import dtmerge
from dtmerge.cli.output import LEVELS, WarningDigest, setup_logging
from dtmerge.terminal import SHOW_LIBRARY_DEPRECATIONS, quiet_libraries
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
    "recipes": ("dtmerge.cli.recipes", "the recipes a run can train beside DTM, with parameters"),
    "compare": ("dtmerge.cli.compare", "A/B comparison of two runs or models (CI gate)"),
    "watch": ("dtmerge.cli.watch", "live view of a run's jobs and monitor curves"),
    "config": ("dtmerge.cli.config", "list every config key, or show a run's resolved config"),
    "export": ("dtmerge.cli.export", "write one variant of a run as a standalone model (LoRA merged)"),
    "frontier": ("dtmerge.cli.frontier", "merged candidates chosen on validation items"),
    "push": ("dtmerge.cli.push", "upload one model of a run with its model card to the Hub"),
}

# Shown under each command's --help: what a user types first.
EXAMPLES = {
    "run": ["dtm run configs/example.yaml --dry-run", "dtm run configs/example.yaml",
            "dtm run configs/example.yaml train.learning_rate=1e-4 --stages train,merge"],
    "disperse": ["dtm disperse configs/example.yaml", "dtm disperse runs/example"],
    "train": ["dtm train configs/example.yaml", "dtm train runs/example train.num_epochs=2"],
    "merge": ["dtm merge runs/example", "dtm merge --list",
              "dtm merge --base base/ --models a/ b/ --method ties --out merged/"],
    "eval": ["dtm eval runs/example", "dtm eval runs/example 'eval.variants=[base,sft,dtm,best]'"],
    "report": ["dtm report runs/example", "dtm report runs/example && open runs/example/report/report.html"],
    "demo": ["dtm demo", "dtm demo --size tiny", "dtm demo --seeds 3", "dtm demo --worlds 3",
             "dtm demo --recipes all", "dtm demo --recipes sft,dtm,l2,wise_ft"],
    "recipes": ["dtm recipes", "dtm recipes l2"],
    "frontier": ["dtm frontier runs/example eval.validation_fraction=0.5",
                 "dtm frontier runs/example 'frontier.methods=[linear,ties]' frontier.budget=12",
                 "dtm frontier runs/example --export chosen"],
    "compare": ["dtm compare runs/a runs/b", "dtm compare runs/a runs/b --tolerance 0.02 --json cmp.json"],
    "watch": ["dtm watch runs/example"],
    "config": ["dtm config keys", "dtm config keys monitor", "dtm config show runs/example",
               "dtm config show configs/example.yaml train.learning_rate=1e-4"],
    "export": ["dtm export runs/example answer --out shipped/answer",
               "dtm export runs/example sft_best --out shipped/sft_best",
               "dtm export runs/example dtm --out shipped/dtm --adapter-only"],
    "push": ["dtm push runs/example dtm --repo my-org/example-dtm",
             "dtm push runs/example sft --repo my-org/example-sft --private"],
}


# What `dtm` exits with (main() returns these); shown under `dtm --help` and in the README.
EXIT_CODES = {
    0: "success",
    1: "dtm compare: B is significantly worse than A beyond --tolerance (or a bug: a traceback)",
    2: "usage or input error (bad flag, config, data or run directory): the message says what to fix",
    130: "interrupted (Ctrl-C): rerun the same command to resume",
    141: "the reader of dtm's output closed the pipe (dtm ... | head)",
}


def _global_options(parser: argparse.ArgumentParser, default) -> None:
    """-q / --log-level, accepted before or after the command."""
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="print only warnings and errors (results are in the run directory)")
    parser.add_argument("--log-level", choices=LEVELS, default=default if default is not None
                        else "info", help="how much dtmerge logs (default info)")


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="dtm", description="Disperse-Then-Merge instruction tuning",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `dtm COMMAND --help` for a command's options and examples.\n\nexit codes:\n"
        + "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items()))
    parser.add_argument("--version", action="version", version=f"dtm {dtmerge.__version__}")
    _global_options(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the invoked subcommand's module is imported.
    wanted = next((a for a in argv if not a.startswith("-")), None)
    subparsers = {}
    for name, (module, help_text) in COMMANDS.items():
        epilog = "examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES.get(name, []))
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _global_options(p, argparse.SUPPRESS)
        p.set_defaults(_module=module)
        if name == wanted:
            importlib.import_module(module).add_arguments(p)
        subparsers[name] = p
    return parser, subparsers


def _parse(argv: list[str]):
    parser, subparsers = build_parser(argv)
    # Overrides (key=value) may come after flags too: `dtm run c.yaml --dry-run train.lr=1`.
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        # answered with the command's own usage, not the top-level one
        where = subparsers.get(getattr(args, "command", None) or "", parser)
        where.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return parser, args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Before torch loads OpenMP: waiting threads sleep instead of spinning, so a busy core
    # slows a job down instead of stalling it (benchmarks/thread_count.py, BENCHMARKS.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        parser, args = _parse(argv)
    except SystemExit as done:  # --help, --version, usage errors
        return int(done.code or 0)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2  # a command is required: a usage error, like argparse's own
    quiet_libraries()
    if args.quiet:  # training jobs (also spawned ones) draw no progress line
        os.environ["DTM_QUIET"] = "1"
    setup_logging(args.log_level, args.quiet)
    if args.log_level == "debug":  # pool workers show libraries' deprecations too
        os.environ[SHOW_LIBRARY_DEPRECATIONS] = "1"
    digest = WarningDigest(show_library_deprecations=args.log_level == "debug")
    try:
        with digest, _Silenced(args.quiet):
            return int(importlib.import_module(args._module).run(args) or 0)
    except DtmError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (head, less) closed the pipe: stop quietly, as a C tool would on SIGPIPE
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    finally:
        digest.report()
        if args.quiet:
            os.environ.pop("DTM_QUIET", None)


def entry() -> int:
    """The `dtm` command: `main` in a process that is dtmerge's own, start to exit."""
    from dtmerge.executors import claim_process

    claim_process()  # in-process jobs may tune the collector (executors.warmup.warm_up_worker)
    code = main()
    # Python's shutdown runs full collections over every tracked object, ~480k once torch,
    # transformers and lm-eval are loaded: 1.7-2.0 s here after every command that loaded
    # them. Frozen, they are skipped and go back to the OS with the process. atexit handlers
    # (multiprocessing's, Ray's, logging's) still run; only finalizers of objects in reference
    # cycles may not, which Python never promises at exit, and dtmerge closes its own files.
    gc.freeze()
    return code


class _Silenced:
    """With --quiet, the stages' progress lines (stdout) are dropped; stderr stays."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __enter__(self):
        if self.quiet:
            self._saved = sys.stdout
            sys.stdout = open(os.devnull, "w")
        return self

    def __exit__(self, *exc):
        if self.quiet:
            sys.stdout.close()
            sys.stdout = self._saved


if __name__ == "__main__":
    sys.exit(entry())

"""`dtm run CONFIG.yaml [key=value ...] [--dry-run] [--stages a,b]`."""

from dtmerge.config import load_config
from dtmerge.pipeline import run_pipeline


def add_arguments(p):
    p.add_argument("config", help="run config YAML")
    p.add_argument("overrides", nargs="*", help="overrides such as train.learning_rate=1e-4")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan only")
    p.add_argument("--throughput", type=float, metavar="TOKENS_PER_S",
                   help="with --dry-run: trained tokens/s of one job measured on your hardware "
                        "(replaces the assumed FLOP rate in the time estimate)")
    p.add_argument("--stages", help="comma-separated subset of data,prepare,train,build,eval,report "
                   "(disperse: prepare, merge: build)")


def run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    stages = args.stages.split(",") if args.stages else None
    run_dir = run_pipeline(cfg, stages=stages, dry_run=args.dry_run, throughput=args.throughput)
    if not args.dry_run:
        print(f"run directory: {run_dir.root}")
    return 0

"""`dtm demo [--seed S] [--seeds N] [--worlds W] [--size small|tiny] [--num-portions K]
[--runs-dir DIR] [--recipes all|NAME,NAME]`."""

from dtmerge.errors import ConfigError


def add_arguments(p):
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--seeds", type=int, default=1,
                   help="training seeds of every recipe on one world (the run's `seeds`: the "
                   "Answer's decision uses their spread)")
    p.add_argument("--worlds", type=int, default=1,
                   help="consecutive testbed worlds from --seed, one run each (mean ± std)")
    p.add_argument("--size", default="small", help="testbed size: small (the demo) or tiny")
    p.add_argument("--num-portions", type=int, default=4, help="K, the number of sub-models")
    p.add_argument("--runs-dir", default="runs", help="where the run directories go")
    p.add_argument("--recipes", default=None,
                   help="recipes beside SFT and DTM: 'all' or a list such as sft,dtm,l2")
    p.add_argument("--cache-dir", default=None,
                   help="testbed cache (default: $DTMERGE_CACHE_DIR/testbed, else ~/.cache/dtmerge/testbed)")


def run(args) -> int:
    from dtmerge.demo.testbed.build import SIZES
    from dtmerge.demo.testbed.demo import run_demo

    if args.size not in SIZES:
        raise ConfigError(f"--size {args.size!r}: choose one of {', '.join(SIZES)}")
    if min(args.seeds, args.worlds, args.num_portions) < 1:
        raise ConfigError("--seeds, --worlds and --num-portions must be at least 1")
    run_demo(seed=args.seed, worlds=args.worlds, train_seeds=args.seeds, size=args.size,
             num_portions=args.num_portions,
             runs_dir=args.runs_dir, cache_dir=args.cache_dir,
             recipes=[n.strip() for n in args.recipes.split(",") if n.strip()]
             if args.recipes else None)
    return 0

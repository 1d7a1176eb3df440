"""`dtm frontier RUN_DIR [key=value ...] [--export NAME [--out DIR] [--overwrite]]`.

Scores a grid of merged candidates of the run's sub-models on validation items and chooses
one (settings: the `frontier:` section of the config, e.g. `frontier.scales=[0.5,1,1.5]`);
`--export NAME` (a candidate name, or `chosen`) writes one as a standard model directory.
"""


def add_arguments(p) -> None:
    p.add_argument("target", help="run directory (trained, merged and evaluated)")
    p.add_argument("overrides", nargs="*", help="overrides such as frontier.budget=8")
    p.add_argument("--export", metavar="NAME", help="write candidate NAME (or 'chosen') as a model")
    p.add_argument("--out", help="export directory (default RUN/models/frontier_<NAME>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export directory")


def run(args) -> int:
    from dtmerge.cli.stage import resolve_config
    from dtmerge.frontier import export_candidate, frontier_stage
    from dtmerge.rundir import RunDir

    cfg = resolve_config(args.target, args.overrides)
    run_dir = RunDir(cfg.run_dir)
    if args.export:
        from dtmerge.publish import write_model_card

        dest = export_candidate(cfg, run_dir, args.export, args.out, args.overwrite)
        write_model_card(run_dir.root, args.export, dest)  # README.md: the Hub card
        print(f"exported {args.export} to {dest}")
        return 0
    summary = frontier_stage(cfg, run_dir)
    chosen = summary["chosen"]
    print(chosen["why"])  # the decision's headline: the same sentence as the report's Answer
    print(f"export it with `dtm export {run_dir.root} answer --out DIR`")
    return 0

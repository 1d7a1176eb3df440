"""`dtm merge`: merge a run's sub-models, or any models / adapters of one base.

    dtm merge RUN_DIR [--method ties --param density=0.5] [key=value ...]
    dtm merge --base BASE --models M1 M2 ... --out DIR [--overwrite] [--method NAME] [...]
    dtm merge --list

In RUN_DIR mode every merge flag sets the matching `merge.*` key of the run's config (and is
saved with it); flags that name models or an output belong to the explicit mode only.
"""

from __future__ import annotations

import yaml

from dtmerge.errors import ConfigError


def add_arguments(p) -> None:
    p.add_argument("target", nargs="?", help="run directory (merges its sub-models)")
    p.add_argument("overrides", nargs="*", help="config overrides such as merge.shard_size=1GB")
    p.add_argument("--list", action="store_true", help="list the merge methods and exit")
    p.add_argument("--base", help="base model directory")
    p.add_argument("--models", nargs="+", help="fine-tuned model or LoRA adapter directories")
    p.add_argument("--out", help="output directory (new, or empty; see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the contents of an existing, non-empty --out directory")
    p.add_argument("--method", help="merge method (default linear)")
    p.add_argument("--weights", nargs="+", type=float, help="one weight per model")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method parameter, e.g. density=0.5 (repeatable)")
    p.add_argument("--base-interpolation", type=float, help="t in base + t*(merged - base)")
    p.add_argument("--shard-size", help="largest output shard (default 2GB)")
    p.add_argument("--as-adapter", action="store_true",
                   help="write a rank-concatenated LoRA adapter (all inputs LoRA)")
    p.add_argument("--fisher-data", nargs="+", help="per-model JSONL data (method fisher)")


def parse_params(items: list[str]) -> dict:
    params = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r} is not KEY=VALUE (e.g. density=0.5)")
        params[key] = yaml.safe_load(raw)
    return params


def list_methods() -> int:
    from dtmerge.merge import METHODS, get_method

    for name in METHODS.names():
        m = get_method(name)
        defaults = ", ".join(f"{k}={v}" for k, v in m.defaults.items()) or "-"
        print(f"{name:16s} {m.pretty_name}\n{'':16s} {m.summary}\n{'':16s} params: {defaults}"
              f"\n{'':16s} {m.reference_url}")
    return 0


def run_dir_config(args, params: dict):
    """The run's config with every merge flag applied as a `merge.*` setting (validated)."""
    from dtmerge.cli.stage import resolve_config
    from dtmerge.config import config_from_dict

    explicit_only = [flag for flag, value in (("--base", args.base), ("--models", args.models),
                                              ("--out", args.out), ("--overwrite", args.overwrite),
                                              ("--fisher-data", args.fisher_data)) if value]
    if explicit_only:
        raise ConfigError(f"dtm merge RUN_DIR merges the run's own sub-models into models/dtm: "
                          f"{', '.join(explicit_only)} belong(s) to the explicit mode "
                          "(dtm merge --base B --models M1 M2 --out DIR)")
    cfg = resolve_config(args.target, list(args.overrides))
    flags = {"method": args.method, "weights": args.weights,
             "params": {**cfg.merge.params, **params} if params else None,
             "base_interpolation": args.base_interpolation, "shard_size": args.shard_size,
             "as_adapter": True if args.as_adapter else None}
    merge = {**cfg.merge.model_dump(mode="json"),
             **{k: v for k, v in flags.items() if v is not None}}
    return config_from_dict({**cfg.model_dump(mode="json"), "merge": merge}, "dtm merge flags")


def run(args) -> int:
    if args.list:
        return list_methods()
    params = parse_params(args.param)
    if args.target:
        from dtmerge.pipeline import run_pipeline

        run_pipeline(run_dir_config(args, params), stages=["merge"])
        return 0
    if not (args.base and args.models and args.out):
        raise ConfigError("dtm merge needs a RUN_DIR, or --base, --models and --out "
                          "(or --list to see the methods)")
    from dtmerge.merge import merge_models
    from dtmerge.merge.validate import check_output_dir

    check_output_dir(args.out, [args.base, *args.models, *(args.fisher_data or [])],
                     args.overwrite)
    record = merge_models(args.base, args.models, args.out, method=args.method or "linear",
                          weights=args.weights, params=params,
                          base_interpolation=args.base_interpolation,
                          shard_size=args.shard_size or "2GB", as_adapter=args.as_adapter,
                          fisher_data=args.fisher_data, log=print)
    print(f"merged {len(args.models)} models with {record['method']} into {args.out} "
          f"({record['seconds']} s)")
    return 0

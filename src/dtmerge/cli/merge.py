"""`dtm merge`: merge a run's sub-models, or any models / adapters of one base.

    dtm merge RUN_DIR [--method ties --param density=0.5] [key=value ...]
    dtm merge --base BASE --models M1 M2 ... --out DIR [--method NAME] [--weights ...]
    dtm merge --list
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
    p.add_argument("--out", help="output directory")
    p.add_argument("--method", help="merge method (default linear)")
    p.add_argument("--weights", nargs="+", type=float, help="one weight per model")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method parameter, e.g. density=0.5 (repeatable)")
    p.add_argument("--base-interpolation", type=float, help="t in base + t*(merged - base)")
    p.add_argument("--shard-size", default="2GB")
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


def run(args) -> int:
    if args.list:
        return list_methods()
    params = parse_params(args.param)
    if args.target:
        from dtmerge.cli.stage import resolve_config
        from dtmerge.pipeline import run_pipeline

        overrides = list(args.overrides)
        if args.method:
            overrides.append(f"merge.method={args.method}")
        if args.weights:
            overrides.append(f"merge.weights={args.weights}")
        overrides += [f"merge.params.{k}={yaml.safe_dump(v).strip()}" for k, v in params.items()]
        if args.base_interpolation is not None:
            overrides.append(f"merge.base_interpolation={args.base_interpolation}")
        run_pipeline(resolve_config(args.target, overrides), stages=["merge"])
        return 0
    if not (args.base and args.models and args.out):
        raise ConfigError("dtm merge needs a RUN_DIR, or --base, --models and --out "
                          "(or --list to see the methods)")
    from dtmerge.merge import merge_models

    record = merge_models(args.base, args.models, args.out, method=args.method or "linear",
                          weights=args.weights, params=params,
                          base_interpolation=args.base_interpolation, shard_size=args.shard_size,
                          as_adapter=args.as_adapter, fisher_data=args.fisher_data, log=print)
    print(f"merged {len(args.models)} models with {record['method']} into {args.out} "
          f"({record['seconds']} s)")
    return 0

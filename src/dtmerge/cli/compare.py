"""`dtm compare A B`: per-benchmark B - A with paired intervals; exit 1 on a regression.

A and B: run directories (their eval/<variant>.json; `--variant answer`: what each run's
decision ships), eval JSON files, or model directories (evaluated with --eval-config). For a
run directory the run's own decision is printed too: compare reports, the decision advises. Exit codes: 0 no significant regression beyond the
tolerance, 1 regression, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="reference: run dir, eval JSON file or model dir")
    p.add_argument("b", metavar="B", help="candidate: run dir, eval JSON file or model dir")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="drop (absolute score) B may show before it counts (default 0.01)")
    p.add_argument("--variant", default="dtm",
                   help="eval/<variant>.json of a run dir (default dtm); 'answer': the model "
                        "the run's decision ships (as the report's Answer)")
    p.add_argument("--variant-b", default=None, help="variant of B when it differs from --variant")
    p.add_argument("--eval-config", default=None,
                   help="YAML with the eval section; needed when A or B is a model directory")
    p.add_argument("--base-model", default=None, help="base model of LoRA adapter directories")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT",
                   help="also write the comparison as JSON")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from dtmerge.report.compare import compare_results, load_side, run_answer
    from dtmerge.report.document import table_to_text
    from dtmerge.rundir import atomic_write_json

    side = {"eval_config": args.eval_config, "base_model": args.base_model}
    sides = (("A", args.a, args.variant), ("B", args.b, args.variant_b or args.variant))
    # each run directory's decision, made once: printed below, and what --variant answer loads
    answers = {name: run_answer(spec) for name, spec, _ in sides
               if Path(spec).is_dir() and (Path(spec) / "eval").is_dir()}
    a, b = (load_side(spec, variant, label=name, answer=answers.get(name), **side)
            for name, spec, variant in sides)
    result = compare_results(a, b, tolerance=args.tolerance, n_boot=args.bootstrap, seed=args.seed)
    print(table_to_text(result.table()))
    for name, _, variant in sides:
        answer = answers.get(name)
        if answer is not None:
            shown = "" if variant in ("answer", answer.choice) else f" (compared here: {variant})"
            print(f"{name}'s run decides{shown}: {answer.headline}")
    for name, missing in (("A", result.only_in_a), ("B", result.only_in_b)):
        if missing:
            print(f"note: only {name} has {', '.join(missing)} (not compared)")
    if args.json_out:
        atomic_write_json(Path(args.json_out), result.to_dict())
    if result.regressions:
        print(f"FAIL: B is significantly worse than A by more than {args.tolerance} on "
              f"{', '.join(result.regressions)}", file=sys.stderr)
        return 1
    print(f"OK: no benchmark where B is significantly worse than A by more than {args.tolerance}")
    return 0

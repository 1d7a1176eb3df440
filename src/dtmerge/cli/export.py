"""`dtm export RUN_DIR VARIANT --out DIR`: ship one variant of a run as a standalone model.

Any model under runs/NAME/models/ (dtm, sft, sft_best, interp_0.5, a recipe's output) is
written to DIR as a full Hugging Face model directory with its tokenizer and model card
(README.md, see dtmerge.publish.card), loadable with
`AutoModelForCausalLM.from_pretrained(DIR)` and nothing else: a LoRA adapter is merged into
the run's base model first (PEFT's merge_and_unload), unless --adapter-only keeps it as is.
`answer` ships what the run's decision recommends (dtmerge.publish.export.export_answer).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory (runs/NAME)")
    p.add_argument("variant", help="a model under RUN_DIR/models/ (dtm, sft, sft_best, interp_0.5...), "
                   "or 'answer': what the run's decision recommends, with decision.json")
    p.add_argument("--out", help="output directory (must not exist)")
    # --out names an output directory in every command; --to is the old spelling (until 0.3).
    p.add_argument("--to", dest="deprecated_to", help=argparse.SUPPRESS)
    p.add_argument("--adapter-only", action="store_true",
                   help="copy a LoRA adapter as it is instead of merging it into the base")


def run(args: argparse.Namespace) -> int:
    from dtmerge.errors import ConfigError

    if args.deprecated_to:
        print("warning: dtm export --to is deprecated and will be removed in dtmerge 0.3: "
              "use --out", file=sys.stderr)
    out = args.out or args.deprecated_to
    if not out:
        raise ConfigError("dtm export needs --out DIR: the directory to write the model to")
    if args.variant == "answer":  # what the run's decision recommends, with decision.json
        from dtmerge.publish.export import export_answer

        choice, dest = export_answer(args.run_dir, out, args.adapter_only)
        print(f"exported answer ({choice}) -> {dest}")
        return 0
    from dtmerge.publish.export import export_variant

    dest = export_variant(args.run_dir, args.variant, out, args.adapter_only)
    print(f"exported {args.variant} -> {dest}")
    return 0

"""`dtm export RUN_DIR VARIANT --out DIR`: ship one variant of a run as a standalone model.

Any model under runs/NAME/models/ (dtm, sft, sft_best, interp_0.5, a recipe's output) is
written to DIR as a full Hugging Face model directory with its tokenizer and model card
(README.md, see dtmerge.publish.card), loadable with
`AutoModelForCausalLM.from_pretrained(DIR)` and nothing else: a LoRA adapter is merged into
the run's base model first (PEFT's merge_and_unload), unless --adapter-only keeps it as is.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory (runs/NAME)")
    p.add_argument("variant", help="a model under RUN_DIR/models/ (dtm, sft, sft_best, interp_0.5...), "
                   "or 'answer': what the run's decision recommends, with decision.json")
    p.add_argument("--out", help="output directory (must not exist)")
    # --out names an output directory in every command; --to is the old spelling (until 0.3).
    p.add_argument("--to", dest="deprecated_to", help=argparse.SUPPRESS)
    p.add_argument("--adapter-only", action="store_true",
                   help="copy a LoRA adapter as it is instead of merging it into the base")


def export_variant(run_dir: str | Path, variant: str, dest: str | Path, adapter_only: bool = False) -> Path:
    """Write `variant` of the run at `run_dir` to `dest` (atomically); returns `dest`.

    Raises:
        DtmError: no such run or variant, or `dest` already exists.
    """
    from dtmerge.config import load_config
    from dtmerge.errors import DtmError
    from dtmerge.rundir import RunDir, atomic_dir

    run = RunDir(run_dir)
    src, dest = run.model(variant), Path(dest)
    if not (run.root / "config.yaml").is_file():
        raise DtmError(f"{run.root} is not a run directory (no config.yaml)")
    if not src.is_dir():
        have = sorted(p.name for p in run.models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if run.models_dir.is_dir() else []
        raise DtmError(f"no model '{variant}' in {run.models_dir}; available: {', '.join(have) or 'none'}")
    if dest.exists():
        raise DtmError(f"{dest} already exists: choose a new --out directory (nothing is overwritten)")
    is_adapter = (src / "adapter_config.json").is_file()
    with atomic_dir(dest) as tmp:
        if adapter_only or not is_adapter:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        else:
            from dtmerge.evaluate.weights import load_variant
            from dtmerge.models import load_tokenizer

            cfg = load_config(run.root / "config.yaml")
            load_variant(cfg, src).save_pretrained(tmp)
            tokenizer = src if (src / "tokenizer_config.json").is_file() else None
            if tokenizer is not None:
                from transformers import AutoTokenizer

                AutoTokenizer.from_pretrained(str(tokenizer)).save_pretrained(tmp)
            else:
                load_tokenizer(cfg.model).save_pretrained(tmp)
        from dtmerge.publish import write_model_card

        write_model_card(run.root, variant, tmp)  # README.md: the Hub card with the evidence
    return dest


def run(args: argparse.Namespace) -> int:
    from dtmerge.errors import ConfigError

    if args.deprecated_to:
        print("warning: dtm export --to is deprecated and will be removed in dtmerge 0.3: "
              "use --out", file=sys.stderr)
    out = args.out or args.deprecated_to
    if not out:
        raise ConfigError("dtm export needs --out DIR: the directory to write the model to")
    if args.variant == "answer":  # what the run's decision recommends, with decision.json
        from dtmerge.cli.answer_export import export_answer

        choice, dest = export_answer(args.run_dir, out, args.adapter_only)
        print(f"exported answer ({choice}) -> {dest}")
        return 0
    dest = export_variant(args.run_dir, args.variant, out, args.adapter_only)
    print(f"exported {args.variant} -> {dest}")
    return 0

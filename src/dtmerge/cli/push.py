"""`dtm push RUN VARIANT --repo ORG/NAME [--private]`: upload a run's model with its card.

The model directory (runs/NAME/models/VARIANT, as the run wrote it: a LoRA adapter stays an
adapter, its card naming the base) and its model card go to the Hub in one commit. The token
comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT points it at another Hub.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory (runs/NAME)")
    p.add_argument("variant", help="a model under RUN_DIR/models/ (dtm, sft, a recipe...)")
    p.add_argument("--repo", required=True, help="Hub repository ORG/NAME (created if needed)")
    p.add_argument("--private", action="store_true", help="create the repository private")


def run(args: argparse.Namespace) -> int:
    from dtmerge.publish.hub import push_model

    url = push_model(args.run_dir, args.variant, args.repo, private=args.private)
    print(f"pushed {args.variant} -> {url}")
    return 0

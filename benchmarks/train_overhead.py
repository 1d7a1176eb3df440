"""Overhead of dtmerge's train_model against plain TRL SFTTrainer, side by side.

Same model, data, tokenizer and settings; the runs alternate (dtmerge, TRL, dtmerge, TRL...)
in ABBA order so machine noise and warm-up hit both alike. Prints tokens/s for each and the ratio; the goal is that
dtmerge adds at most 5% (ratio of median step-loop times <= 1.05).

    .venv/bin/python benchmarks/train_overhead.py [--repeats 3] [--steps 30] [--method lora]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def make_data(path: Path, n: int) -> None:
    import random

    rng = random.Random(0)
    words = "the city of paris is in france and alice works at acme as an engineer".split()
    with open(path, "w") as fh:
        for i in range(n):
            q = " ".join(rng.choice(words) for _ in range(6))
            a = " ".join(rng.choice(words) for _ in range(30))
            fh.write(json.dumps({"prompt": [{"role": "user", "content": q}],
                                 "completion": [{"role": "assistant", "content": a}]}) + "\n")


def make_model(path: Path) -> None:
    import torch
    from tiny import build_tiny_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=704,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)


def run_dtmerge(cfg, data: Path, out: Path) -> float:
    from dtmerge.train import train_model

    t0 = time.perf_counter()
    info = train_model(cfg, data, out, "bench")
    return info["train_runtime"], time.perf_counter() - t0


def run_trl(cfg, data: Path, out: Path) -> float:
    """Plain TRL with the same arguments dtmerge derives (no dtmerge callbacks or I/O)."""
    from datasets import Dataset
    from trl import SFTTrainer

    from dtmerge.models import load_model, load_tokenizer
    from dtmerge.train.trainer import lora_config, sft_config

    t0 = time.perf_counter()
    records = [json.loads(line) for line in open(data)]
    dataset = Dataset.from_list(records)
    tok = load_tokenizer(cfg.model)
    model = load_model(cfg.model)
    peft = lora_config(cfg, model) if cfg.train.method == "lora" else None
    args = sft_config(cfg, out, [])
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok,
                         peft_config=peft)
    result = trainer.train()
    trainer.model.save_pretrained(out / "final")
    tok.save_pretrained(out / "final")
    return result.metrics["train_runtime"], time.perf_counter() - t0


def main() -> None:
    import torch

    from dtmerge.config import config_from_dict

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--method", default="lora", choices=["lora", "full"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_model(tmp / "base")
        make_data(tmp / "data.jsonl", 400)
        batch, seq = 8, 256
        cfg = config_from_dict({
            "name": "bench", "runs_dir": str(tmp / "runs"), "model": {"path": str(tmp / "base")},
            "data": {"path": str(tmp / "data.jsonl")},
            "train": {"method": args.method, "max_steps": args.steps, "batch_size": batch,
                      "grad_accum": 1, "max_length": seq, "warmup_steps": 0,
                      "save_steps": 10_000, "logging_steps": 10},
        })
        loop = {"dtmerge": [], "trl": []}
        wall = {"dtmerge": [], "trl": []}
        for r in range(args.repeats):
            pair = [("dtmerge", run_dtmerge), ("trl", run_trl)]
            for name, fn in (pair if r % 2 == 0 else pair[::-1]):  # ABBA: no order bias
                t_loop, t_wall = fn(cfg, tmp / "data.jsonl", tmp / f"{name}{r}")
                loop[name].append(t_loop)
                wall[name].append(t_wall)
        tokens = args.steps * batch * seq  # padded tokens per run, identical for both
        print(f"model: Llama 4x256, {args.method}, {args.steps} steps of {batch}x{seq}, "
              f"{args.repeats} ABBA repeats, {args.threads} threads")
        for what, times in (("training loop", loop), ("end to end (load+train+save)", wall)):
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"-- {what}")
            for k in ("dtmerge", "trl"):
                print(f"   {k:8s} median {med[k]:.2f} s  ({tokens / med[k]:.0f} tok/s)  "
                      f"runs {[round(t, 2) for t in times[k]]}")
            ratio = med["dtmerge"] / med["trl"]
            print(f"   ratio dtmerge/trl = {ratio:.3f} -> overhead {100 * (ratio - 1):+.1f}% "
                  f"(goal <= +5%)")


if __name__ == "__main__":
    main()

"""Helpers for the "nothing lost" catalogue: configs and run directories on a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tiny import write_alpaca, write_mc_task


@pytest.fixture
def make_config(tmp_path, tiny_model_dir):
    """Write a small run config (K=2, LoRA, 2 steps) with `overrides` merged in; return its path."""

    def make(**overrides) -> Path:
        data = write_alpaca(tmp_path / "data.jsonl", 24)
        cfg = {
            "name": "r", "runs_dir": str(tmp_path / "runs"), "model": {"path": str(tiny_model_dir)},
            "data": {"path": str(data), "eval_fraction": 0.1},
            "disperse": {"num_portions": 2},
            "train": {"max_steps": 2, "batch_size": 4, "grad_accum": 1, "warmup_steps": 0,
                      "max_length": 128, "save_steps": 1, "lora": {"r": 4, "alpha": 8}},
            "eval": {"tasks": [], "variants": ["base", "sft", "dtm", "submodels"]},
        }
        for section, values in overrides.items():
            if isinstance(values, dict):
                cfg.setdefault(section, {}).update(values)
            else:
                cfg[section] = values
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


@pytest.fixture
def mc_tasks(tmp_path) -> Path:
    rows = [{"question": f"where is {n} born", "choices": ["paris", "rome"], "answer": i % 2}
            for i, n in enumerate(["alice", "bob", "carol", "dave"])]
    return write_mc_task(tmp_path / "tasks", "tiny_mc", rows)

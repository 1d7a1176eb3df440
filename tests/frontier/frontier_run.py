"""A tiny trained-looking run: a base, three full sub-models and an SFT model (the base plus
seeded noise), merged and evaluated by the run's own stages on two local tasks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tiny import write_alpaca, write_mc_task, write_rolling_task

CITIES = ["paris", "london", "rome", "berlin"]
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank"]


def perturbed_copy(base: Path, out: Path, seed: int, scale: float = 0.02) -> Path:
    shutil.copytree(base, out)
    weights = load_file(str(out / "model.safetensors"))
    gen = torch.Generator().manual_seed(seed)
    noisy = {n: (t + scale * torch.randn(t.shape, generator=gen)).contiguous()
             if t.is_floating_point() else t for n, t in weights.items()}
    save_file(noisy, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def frontier_cfg(root: Path, base: Path, **frontier):
    from dtmerge.config import RunConfig

    tasks = root / "tasks"
    know = [{"question": f"where is {p} born {j}", "choices": CITIES, "answer": (i + j) % 4}
            for i, p in enumerate(PEOPLE) for j in range(5)]
    instr = [{"question": f"reply with {c} {j}", "choices": CITIES, "answer": k % 4}
             for k, (c, j) in enumerate((c, j) for c in CITIES for j in range(6))]
    write_mc_task(tasks, "fr_know", know, category="knowledge")
    write_mc_task(tasks, "fr_instr", instr, category="instruction")
    # held-out loss: the frontier places its choice on the second plane too
    docs = [f"{p} is born in {c}. {q} works in {d}, not in {c}." for p, q in zip(PEOPLE, PEOPLE[1:])
            for c, d in zip(CITIES, CITIES[1:])]
    write_rolling_task(tasks, "fr_roll", docs)
    return RunConfig.model_validate({
        "name": "fr", "runs_dir": str(root / "runs"), "model": {"path": str(base)},
        "data": {"path": str(write_alpaca(root / "data.jsonl", 8))},
        "disperse": {"num_portions": 3},
        "merge": {"method": "linear"},
        "eval": {"tasks": ["fr_know", "fr_instr", "fr_roll"], "include_path": [str(tasks)],
                 "batch_size": 8, "device": "cpu", "variants": ["base", "sft", "dtm",
                                                                "interpolation"],
                 "interpolation": [0.5], "validation_fraction": 0.5, "split_seed": 0},
        "frontier": {"methods": ["linear", "ties", "task_arithmetic"], "scales": [1.0, 1.5],
                     "prune_fraction": 0.5, "prune_keep": 2, **frontier},
    })


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, tiny_model_dir):
    """(cfg, run) of a run whose merge and evaluate stages are done; copy before changing."""
    from dtmerge.evaluate.stage import evaluate_stage
    from dtmerge.recipes.stages import build_stage
    from dtmerge.rundir import RunDir

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("frontier")
    cfg = frontier_cfg(root, tiny_model_dir)
    run = RunDir(cfg.run_dir)
    for k in range(3):
        perturbed_copy(tiny_model_dir, run.model(f"sub_{k}"), seed=100 + k)
    perturbed_copy(tiny_model_dir, run.model("sft"), seed=99, scale=0.04)
    for k in range(3):
        run.portion("dtm", k).parent.mkdir(parents=True, exist_ok=True)
    (run.root / "config.yaml").write_text(cfg.to_yaml())
    build_stage(cfg, run, log=lambda _m: None)
    evaluate_stage(cfg, run, log=lambda _m: None)
    return cfg, run


def copy_run(cfg, run, dest: Path):
    """An independent copy of the evaluated run at `dest` (its config pointing there)."""
    from dtmerge.rundir import RunDir

    shutil.copytree(run.root, dest / "fr")
    cfg = cfg.model_copy(update={"runs_dir": str(dest)})
    (dest / "fr" / "config.yaml").write_text(cfg.to_yaml())
    return cfg, RunDir(dest / "fr")

"""Synthetic run directories for the report tests: the files other stages would write."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def write_eval(root: Path, variant: str, tasks: dict[str, tuple[str, list[float]]],
               settings: dict | None = None) -> Path:
    """eval/<variant>.json following the evaluation contract; tasks: name -> (category, items)."""
    out = {"variant": variant, "model": f"/models/{variant}", "adapter": None, "base_model": None,
           "settings": settings or {"num_fewshot": None, "apply_chat_template": False, "limit": None,
                                    "batch_size": 16, "gen_kwargs": None, "lm_eval_version": "0.4.13",
                                    "task_versions": {t: 1.0 for t in tasks}},
           "tasks": {}}
    for name, (category, scores) in tasks.items():
        x = np.asarray(scores, dtype=float)
        out["tasks"][name] = {
            "metric": "acc", "score": float(x.mean()),
            "stderr": float(x.std(ddof=1) / np.sqrt(len(x))), "n": len(x),
            "metrics": {"acc": float(x.mean())}, "category": category,
            "items": [{"doc_id": i, "score": float(s), "pred": 0, "gold": 0, "response": None}
                      for i, s in enumerate(x)],
        }
    path = root / "eval" / f"{variant}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return path


def _correct(rng, p: float, n: int) -> list[float]:
    return (rng.random(n) < p).astype(float).tolist()


def make_run(root: Path, seed: int = 0, n: int = 120, with_extras: bool = True) -> Path:
    """A run with base, sft, dtm, 3 sub-models and interpolations on two knowledge tasks
    (plus one reasoning) and one instruction task, a manifest, monitor curves and bias.json."""
    rng = np.random.default_rng(seed)
    acc = {  # (knowledge, instruction) accuracies per variant: SFT pays a tax, DTM less
        "base": (0.70, 0.20), "interp_0.5": (0.66, 0.45), "sft": (0.55, 0.70),
        "dtm": (0.65, 0.68), "sub_0": (0.60, 0.60), "sub_1": (0.61, 0.58), "sub_2": (0.59, 0.61),
    }
    for variant, (know, instr) in acc.items():
        write_eval(root, variant, {
            "facts": ("knowledge", _correct(rng, know, n)),
            "science": ("knowledge", _correct(rng, know, n)),
            "arith": ("reasoning", _correct(rng, know - 0.1, n)),
            "follow": ("instruction", _correct(rng, instr, n)),
        })
    if not with_extras:
        return root
    now = time.time()
    manifest = {"jobs": {
        "data": {"status": "done", "seconds": 1.5, "started": now - 100},
        "train:sub_0": {"status": "done", "seconds": 65.0, "started": now - 90},
        "train:sub_1": {"status": "running", "started": now - 12.0, "seconds": None},
        "train:sft": {"status": "failed", "seconds": None, "error": "TrainingError: NaN loss"},
        "eval:sub_1": {"status": "done", "seconds": 4.0},
    }}
    (root / "manifest.json").write_text(json.dumps(manifest))
    for job, peak in (("sub_0", 0.7), ("sub_1", 0.66)):
        d = root / "monitor" / job
        d.mkdir(parents=True)
        lines = [{"step": s, "probe_acc": a, "train_loss": 2 - s / 100, "heldout_loss": 2 - s / 400,
                  "ratio": 1 + s / 50}
                 for s, a in zip(range(0, 101, 20), [0.6, peak, peak - 0.02, peak - 0.05, peak - 0.1, peak - 0.12])]
        (d / "monitor.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 1')
        (d / "monitor_summary.json").write_text(json.dumps(
            {"alert": True, "alert_step": 80, "peak_acc": peak, "peak_step": 20, "best_step": 20}))
    progress = root / "models" / ".work" / "sub_1" / "progress.json"
    progress.parent.mkdir(parents=True)
    progress.write_text(json.dumps({"step": 30, "max_steps": 120, "loss": 1.234}))
    position = {"n": 120, "n_choices": 4, "pred_share": {"A": 0.55, "B": 0.15, "C": 0.15, "D": 0.15},
                "gold_share": {"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25}, "tv_distance": 0.3,
                "chi2": 40.0, "p_value": 1e-8, "most_picked": "A", "over_pick": 0.3}
    boiler = {"n": 120, "top_opening": "sure here is", "top_opening_share": 0.4,
              "distinct_opening_share": 0.3, "mean_words": 42.0, "length_ratio": 1.8}
    tokens = {"rare_max_count": 2, "models": {"sft": {
        "top_tokens": [{"token": "Certainly", "id": 5, "loss_drop": 2.1, "count": 1, "rare": True}],
        "rare_share_of_top": 0.8, "mean_drop_rare": 0.9, "mean_drop_common": 0.2}}}
    (root / "eval" / "bias.json").write_text(json.dumps({
        "variants": {"sft": {"facts": {"position": position}, "follow": {"boilerplate": boiler}},
                     "dtm": {"facts": {"position": position | {"most_picked": "B", "over_pick": 0.05}}}},
        "tokens": tokens}))
    return root

"""Synthetic eval files for the decision's tests: variants placed on purpose on the planes.

Every variant's items share one difficulty per item (so models are paired as real ones are:
easy items are easy for all), and each variant gets its own small per-item jitter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

N = 400  # items per task: enough that designed gaps of ~0.1 are beyond noise


def scores(p: float, difficulty: np.ndarray, jitter: np.ndarray) -> list[float]:
    return ((difficulty + 0.15 * jitter) < p).astype(float).tolist()


def eval_json(variant: str, instr: float, know: float, loss: float | None, seed: int,
              n: int = N, noise: float = 1.0) -> dict:
    common = np.random.default_rng(1000)
    diff_i, diff_k = common.random(n), common.random(n)
    base_loss = 1.0 + 0.3 * common.random(n)
    own = np.random.default_rng(seed)
    tasks = {
        "follow": {"category": "instruction",
                   "items": scores(instr, diff_i, noise * (own.random(n) - 0.5))},
        "facts": {"category": "knowledge",
                  "items": scores(know, diff_k, noise * (own.random(n) - 0.5))},
    }
    out = {"variant": variant, "model": f"/models/{variant}", "settings": {}, "tasks": {}}
    for name, t in tasks.items():
        x = np.asarray(t["items"])
        out["tasks"][name] = {"metric": "acc", "score": float(x.mean()),
                              "stderr": float(x.std(ddof=1) / np.sqrt(n)), "n": n,
                              "category": t["category"],
                              "items": [{"doc_id": i, "score": float(s)} for i, s in enumerate(x)]}
    if loss is not None:
        per_item = base_loss + loss + 0.02 * noise * own.standard_normal(n)
        nbytes = 100
        ll = -per_item * nbytes * np.log(2)  # bits per byte = -ll / ln 2 / bytes
        out["tasks"]["heldout"] = {
            "metric": "bits_per_byte", "higher_is_better": False, "category": "language_modeling",
            "score": float(per_item.mean()), "stderr": None, "n": n,
            "items": [{"doc_id": i, "score": float(per_item[i]), "loglikelihood": float(ll[i]),
                       "bytes": nbytes, "words": 20} for i in range(n)]}
    return out


# (instruction, knowledge, loss added to the base's) of the reference line: concave, as weight
# interpolation usually is (most instruction following comes early, most forgetting late).
LINE = {"base": (0.10, 0.90, 0.00), "interp_0.25": (0.40, 0.88, 0.01),
        "interp_0.5": (0.55, 0.84, 0.03), "interp_0.75": (0.62, 0.76, 0.07),
        "sft": (0.66, 0.60, 0.15)}


def write_run(root: Path, methods: dict[str, tuple[float, float, float]],
              line: dict | None = None, with_loss: bool = True, split: float | None = 0.5,
              noise: float = 1.0) -> Path:
    """eval/<variant>.json for the line and `methods`, and eval/split.json when `split`."""
    (root / "eval").mkdir(parents=True, exist_ok=True)
    for k, (name, (x, y, loss)) in enumerate({**(line if line is not None else LINE),
                                              **methods}.items()):
        data = eval_json(name, x, y, loss if with_loss else None, seed=k, noise=noise)
        (root / "eval" / f"{name}.json").write_text(json.dumps(data))
    if split is not None:
        (root / "eval" / "split.json").write_text(
            json.dumps({"validation_fraction": split, "seed": 0}))
    return root

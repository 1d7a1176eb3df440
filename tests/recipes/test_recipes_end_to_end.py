"""`dtm run` with several recipes: every recipe trained, built, scored and reported."""

import json

import pytest
import torch
import yaml

from tiny import write_alpaca, write_mc_task
from dtmerge.cli.main import main


@pytest.mark.slow
def test_several_recipes_in_one_run(tmp_path, tiny_model_dir, text_file):
    torch.set_num_threads(1)
    data = write_alpaca(tmp_path / "data.jsonl", 24)
    rows = [{"question": f"where is {n} born", "choices": ["paris", "london", "rome", "berlin"],
             "answer": i % 4} for i, n in enumerate(["alice", "bob", "carol", "dave"] * 2)]
    tasks = write_mc_task(tmp_path / "tasks", "tiny_mc", rows)
    recipes = [{"name": "sft"}, {"name": "dtm"}, {"name": "dtm", "label": "dtm-k3", "num_portions": 3},
               {"name": "wise_ft", "t": 0.5}, {"name": "l2", "coef": 1.0},
               {"name": "replay", "text": str(text_file)}, {"name": "ensemble"},
               {"name": "lora_moe", "experts": 2}]
    cfg = {
        "name": "rec", "runs_dir": str(tmp_path / "runs"), "model": {"path": str(tiny_model_dir)},
        "data": {"path": str(data), "eval_fraction": 0.1},
        "disperse": {"strategy": "random", "num_portions": 2},
        "train": {"method": "lora", "max_steps": 2, "batch_size": 4, "grad_accum": 1,
                  "learning_rate": 5e-3, "warmup_steps": 0, "max_length": 128,
                  "lora": {"r": 4, "alpha": 8}},
        "eval": {"tasks": ["tiny_mc"], "include_path": [str(tasks)], "batch_size": 8,
                 "variants": ["base", "sft", "dtm", "interpolation"], "interpolation": [0.5]},
        "recipes": recipes,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path)]) == 0
    run = tmp_path / "runs" / "rec"
    labels = ["sft", "dtm", "dtm-k3", "wise_ft", "l2", "replay", "ensemble", "lora_moe"]
    for label in labels + ["base", "interp_0.5"]:
        result = json.loads((run / "eval" / f"{label}.json").read_text())
        assert result["tasks"]["tiny_mc"]["n"] == 8, label
    manifest = json.loads((run / "manifest.json").read_text())["jobs"]
    assert {f"train:dtm-k3_sub_{i}" for i in range(3)} <= set(manifest)
    described = json.loads((run / "recipes.json").read_text())
    assert described["ensemble"]["inference_cost"] == 2 and described["dtm-k3"]["num_portions"] == 3
    # wise_ft at t=0.5 is the interpolation point t=0.5: the same scores on the same items
    wise = json.loads((run / "eval" / "wise_ft.json").read_text())["tasks"]["tiny_mc"]
    point = json.loads((run / "eval" / "interp_0.5.json").read_text())["tasks"]["tiny_mc"]
    assert wise["score"] == point["score"]
    report = (run / "report" / "report.md").read_text()
    assert "Recipes" in report and "lora_moe" in report
    # a rerun does no work again
    assert main(["run", str(path)]) == 0
    after = json.loads((run / "manifest.json").read_text())["jobs"]
    assert all(after[j].get("finished") == manifest[j].get("finished") for j in manifest
               if j.startswith("train:"))

"""`seeds: N`: every recipe trained N times, and the Answer rests on all of them."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from dtmerge.cli.main import main
from tiny import write_alpaca, write_mc_task


@pytest.mark.slow
def test_a_two_seed_run_trains_a_replicate_and_the_answer_counts_it(tmp_path, tiny_model_dir):
    torch.set_num_threads(1)
    data = write_alpaca(tmp_path / "data.jsonl", 24)
    cities = ["paris", "london", "rome", "berlin"]
    know = [{"question": f"where is {n} born", "choices": cities, "answer": i % 4}
            for i, n in enumerate(["alice", "bob", "carol", "dave"] * 4)]
    instr = [{"question": f"reply with {c}", "choices": cities, "answer": i % 4}
             for i, c in enumerate(cities * 4)]
    tasks = tmp_path / "tasks"
    write_mc_task(tasks, "s_know", know, category="knowledge")
    write_mc_task(tasks, "s_instr", instr, category="instruction")
    cfg = {
        "name": "seeds", "runs_dir": str(tmp_path / "runs"), "seeds": 2,
        "model": {"path": str(tiny_model_dir)}, "data": {"path": str(data)},
        "disperse": {"num_portions": 2},
        "train": {"max_steps": 2, "batch_size": 4, "grad_accum": 1, "warmup_steps": 0,
                  "max_length": 128, "lora": {"r": 4, "alpha": 8}},
        "eval": {"tasks": ["s_know", "s_instr"], "include_path": [str(tasks)], "batch_size": 8,
                 "variants": ["base", "sft", "dtm", "interpolation"], "interpolation": [0.5]},
        "report": {"bootstrap_samples": 200},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path)]) == 0
    run = tmp_path / "runs" / "seeds"
    replicate = run / "seeds" / "seed1"
    assert (replicate / "models" / "sub_1" / "adapter_config.json").is_file()
    assert {p.stem for p in (replicate / "eval").glob("*.json")} >= {"sft", "dtm", "interp_0.5"}
    assert not (replicate / "eval" / "base.json").exists()  # the base does not depend on it
    # another training seed: another model
    a = (run / "models" / "sft" / "adapter_model.safetensors").read_bytes()
    b = (replicate / "models" / "sft" / "adapter_model.safetensors").read_bytes()
    assert a != b
    answer = json.loads((run / "report" / "report.json").read_text())["answer"]
    assert answer["decision"]["seeds"]["dtm"] == 2 and answer["decision"]["seeds"]["base"] == 1
    assert any("2 training seeds" in s for s in answer["sentences"])
    # a rerun finds every replicate's work done
    assert main(["run", str(path)]) == 0

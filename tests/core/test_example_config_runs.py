"""configs/example.yaml runs end to end on the data the repository ships
(examples/sample-alpaca.jsonl): here with a tiny model built in the test and a local task in
place of the Hub model and benchmarks, the only two things it reads from a network."""

import json
import shutil
from pathlib import Path

import pytest
from tiny import write_mc_task

from dtmerge.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_example_config_runs_on_the_shipped_sample(tmp_path, tiny_model_dir, monkeypatch, capsys):
    for folder in ("configs", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    rows = [{"question": f"which city is {w}", "choices": ["paris", "rome", "london"],
             "answer": i % 3} for i, w in enumerate(["one", "two", "three", "four", "five", "six"])]
    write_mc_task(tmp_path / "tasks", "tiny_knowledge", rows)
    overrides = [f"model.path={tiny_model_dir}", "eval.tasks=[tiny_knowledge]",
                 f"eval.include_path=[{tmp_path / 'tasks'}]", "train.max_length=128"]
    assert main(["-q", "run", "configs/example.yaml", *overrides]) == 0, capsys.readouterr().err
    run = tmp_path / "runs" / "my-dtm-run"
    summary = json.loads((run / "data" / "summary.json").read_text())
    assert json.dumps(summary).count("portion") >= 4
    assert sum(1 for _ in (run / "data" / "all.jsonl").open()) >= 50  # the shipped sample
    assert (run / "models" / "dtm" / "config.json").is_file()
    for variant in ("base", "sft", "dtm"):
        scores = json.loads((run / "eval" / f"{variant}.json").read_text())
        assert "tiny_knowledge" in json.dumps(scores)
    assert (run / "report" / "report.md").is_file()

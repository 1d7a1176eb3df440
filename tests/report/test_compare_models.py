"""`dtm compare` on two model directories: both evaluated with the same --eval-config."""

import json
import shutil

import pytest

from dtmerge.cli.main import main
from tiny import write_mc_task


@pytest.mark.slow
def test_identical_models_pass_the_gate(tmp_path, tiny_model_dir, capsys):
    import torch

    torch.set_num_threads(1)
    rows = [{"question": f"where is {p} born", "choices": ["paris", "london", "rome"], "answer": i % 3}
            for i, p in enumerate(["alice", "bob", "carol", "dave"] * 2)]
    tasks = write_mc_task(tmp_path / "tasks", "report_tiny_mc", rows)
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"eval:\n  tasks: [report_tiny_mc]\n  include_path: [{tasks}]\n  batch_size: 8\n")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    out = tmp_path / "cmp.json"
    rc = main(["compare", str(tiny_model_dir), str(copy), "--eval-config", str(cfg), "--json", str(out)])
    assert rc == 0, capsys.readouterr()
    result = json.loads(out.read_text())
    d = result["benchmarks"]["report_tiny_mc"]
    assert d["n"] == 8 and d["mean"] == 0.0 and (d["low"], d["high"]) == (0.0, 0.0)

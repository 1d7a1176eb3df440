"""`dtm compare` on two model directories: both evaluated with the same --eval-config."""

import json
import shutil

import pytest

from dtmerge.cli.main import main

TASK = """task: report_tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
metadata:
  version: 1.0
  category: knowledge
"""


@pytest.mark.slow
def test_identical_models_pass_the_gate(tmp_path, tiny_model_dir, capsys):
    import torch

    torch.set_num_threads(1)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    rows = [{"question": f"where is {p} born", "choices": ["paris", "london", "rome"], "answer": i % 3}
            for i, p in enumerate(["alice", "bob", "carol", "dave"] * 2)]
    (tasks / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "report_tiny_mc.yaml").write_text(TASK.format(data=tasks / "mc.jsonl"))
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

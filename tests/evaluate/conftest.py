"""Fixtures for the evaluation tests: tiny local lm-eval task directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiny import write_rolling_task

PEOPLE = ["alice", "bob", "carol", "dave"]
CITIES = ["paris", "london", "rome", "berlin"]


def write_task_dir(root: Path, n_mc: int = 12, n_gen: int = 4) -> Path:
    """A knowledge multiple-choice task (tagged) and a small generation task, all local."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    mc = [{"question": f"where is {p} born", "choices": CITIES, "answer": (i + j) % 4}
          for i, p in enumerate(PEOPLE) for j in range(max(1, n_mc // len(PEOPLE)))][:n_mc]
    (data / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mc))
    gen = [{"instruction": f"name a city {i}", "output": CITIES[i % 4]} for i in range(n_gen)]
    (data / "gen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gen))
    (root / "tiny_mc.yaml").write_text(f"""task: tiny_mc
tag: [knowledge]
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data / 'mc.jsonl'}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
metadata:
  version: 1.0
""")
    (root / "tiny_gen.yaml").write_text(f"""task: tiny_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data / 'gen.jsonl'}
test_split: test
output_type: generate_until
doc_to_text: "{{{{instruction}}}}\\n"
doc_to_target: "{{{{output}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
metadata:
  version: 2.0
  category: instruction
""")
    return root


@pytest.fixture(scope="session")
def rolling_task_dir(tmp_path_factory) -> Path:
    return write_rolling_task(write_task_dir(tmp_path_factory.mktemp("rolling_tasks")))


@pytest.fixture(scope="session")
def task_dir(tmp_path_factory) -> Path:
    return write_task_dir(tmp_path_factory.mktemp("tasks"))

"""Fixtures for the evaluation tests: tiny local lm-eval task directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


ROLLING_DOCS = [
    "alice is born in paris. bob is born in rome.",
    "the capital of rome is rome, and the answer is short.",
    "carol works in london; dave works in berlin. who is born where?",
    "please write a long list of the first city names: paris, london, rome, berlin.",
    "one, two, three, four: which answer is the response to the instruction?",
    "where is the city of the capital? it is the first city in the list.",
]


def write_rolling_task(root: Path, name: str = "tiny_roll", docs: list[str] = ROLLING_DOCS,
                       category: str = "knowledge") -> Path:
    """A local language-modelling task like lm-eval's wikitext (loglikelihood_rolling over
    each document; word/byte perplexity and bits per byte, all lower is better)."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / f"{name}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    (root / f"{name}.yaml").write_text(f"""task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data / f'{name}.jsonl'}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 1.0
  category: {category}
""")
    return root


@pytest.fixture(scope="session")
def rolling_task_dir(tmp_path_factory) -> Path:
    return write_rolling_task(write_task_dir(tmp_path_factory.mktemp("rolling_tasks")))


@pytest.fixture(scope="session")
def task_dir(tmp_path_factory) -> Path:
    return write_task_dir(tmp_path_factory.mktemp("tasks"))

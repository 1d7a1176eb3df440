"""The offline English instruction data and tasks of the Gemma config."""

from __future__ import annotations

import json
import re

import yaml

from dtmerge.data.formats import normalise
from dtmerge.realdata import build_realdata
from dtmerge.realdata.facts import world_fact_items
from dtmerge.realdata.instructions import instruction_check_items


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_build_writes_data_and_tasks(tmp_path):
    rd = build_realdata(tmp_path / "rd", num_examples=300)
    records = _jsonl(rd.data)
    assert len(records) == 300 and len({r["source"] for r in records}) == 9
    assert all(normalise(r, "alpaca") for r in records)
    for name in rd.knowledge_tasks + rd.instruction_tasks:
        spec = yaml.safe_load((rd.tasks_dir / f"{name}.yaml").read_text())
        items = _jsonl(rd.tasks_dir / f"{name}.jsonl")
        assert spec["task"] == name and spec["metadata"]["category"] in ("knowledge", "instruction")
        assert spec["dataset_kwargs"]["data_files"]["test"] == str((rd.tasks_dir / f"{name}.jsonl").resolve())
        assert len(items) >= 50
        assert all(0 <= it["answer"] < len(it["choices"]) for it in items)
        assert all(len(set(it["choices"])) == len(it["choices"]) for it in items)
    # Held-out instruction checks never appear among the training instructions.
    checks = {c["instruction"] for c in _jsonl(rd.tasks_dir / "rt_instruction_check.jsonl")}
    assert not checks & {r["instruction"] for r in records}


def test_generation_is_deterministic(tmp_path):
    a = build_realdata(tmp_path / "a", num_examples=50)
    b = build_realdata(tmp_path / "b", num_examples=50)
    assert a.data.read_bytes() == b.data.read_bytes()
    for name in ("rt_world_facts", "rt_text_continuation", "rt_instruction_check"):
        assert (a.tasks_dir / f"{name}.jsonl").read_bytes() == (b.tasks_dir / f"{name}.jsonl").read_bytes()


def test_right_answers_are_right():
    by_family = {}
    for item in instruction_check_items():
        by_family.setdefault(item["family"], item)
    arithmetic = by_family["arithmetic"]
    a, b = [int(w) for w in re.findall(r"\d+", arithmetic["instruction"])]
    assert arithmetic["choices"][arithmetic["answer"]] == str(a + b)
    caps = by_family["capitals"]
    assert caps["choices"][caps["answer"]].isupper()
    paris = next(i for i in world_fact_items() if "capital of France" in i["question"])
    assert paris["choices"][paris["answer"]] == "Paris"

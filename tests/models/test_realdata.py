"""The offline English instruction data and tasks of the Gemma config."""

from __future__ import annotations

import json
import re

import yaml

from dtmerge.data.formats import normalise
from dtmerge.demo.realdata import build_realdata
from dtmerge.demo.realdata.facts import world_fact_items
from dtmerge.demo.realdata.instructions import (FAMILIES, HELDOUT_SHARE, family_capacity,
                                                 instruction_check_items)


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


def test_instruction_checks_are_many_distinct_and_leave_every_family_trainable():
    items = instruction_check_items()
    # 400 items: a standard error of at most 0.029 on the test part at validation_fraction 0.25
    assert len(items) == 400 and len({i["instruction"] for i in items}) == 400
    for family in FAMILIES:
        held_out = sum(i["family"] == family for i in items)
        assert 0 < held_out <= HELDOUT_SHARE * family_capacity(family)
    # asking for more than half of every family is refused, not silently short
    try:
        instruction_check_items(n=sum(family_capacity(f) for f in FAMILIES))
    except ValueError as err:
        assert "held-out instruction checks" in str(err)
    else:
        raise AssertionError("an impossible number of checks was accepted")


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


def _shingles(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = text.lower().split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_heldout_text_task_is_a_rolling_lm_task_not_in_the_instruction_data(tmp_path):
    rd = build_realdata(tmp_path / "rd", num_examples=1200)
    assert rd.lm_loss_tasks == ("rt_heldout_text",)
    spec = yaml.safe_load((rd.tasks_dir / "rt_heldout_text.yaml").read_text())
    assert spec["output_type"] == "loglikelihood_rolling" and spec["doc_to_target"] == "{{text}}"
    assert [m["metric"] for m in spec["metric_list"]] == ["word_perplexity", "byte_perplexity",
                                                          "bits_per_byte"]
    assert not any(m["higher_is_better"] for m in spec["metric_list"])
    docs = _jsonl(rd.tasks_dir / "rt_heldout_text.jsonl")
    prov = json.loads((rd.tasks_dir / "rt_heldout_text.provenance.json").read_text())
    assert prov["docs"] == len(docs) and 0 < len(docs) <= 48
    assert prov["words"] == sum(d["words"] for d in docs)
    assert prov["bytes"] == sum(len(d["text"].encode()) for d in docs)
    # the Python standard library is on every machine: its docstrings always contribute
    assert prov["by_source"]["python-stdlib"] > 0
    assert all(d["origin"] and d["source"] in ("python-stdlib", "licenses", "package-docs")
               for d in docs)
    assert len({d["text"] for d in docs}) == len(docs)
    # held out: no 8-word run of any training example appears in any passage
    train = set().union(*(_shingles(f"{r['instruction']} {r['output']}") for r in _jsonl(rd.data)))
    assert all(not (_shingles(d["text"]) & train) for d in docs)


def test_heldout_selection_skips_missing_roots_and_is_deterministic(tmp_path):
    from dtmerge.demo.realdata.heldout import is_prose, select_heldout

    docs_dir = tmp_path / "doc"
    (docs_dir / "pkg").mkdir(parents=True)
    para = ("This package provides a small library for reading configuration files. It keeps "
            "the original order of the sections and reports every error with its line number.")
    (docs_dir / "pkg" / "README").write_text("\n\n".join([para] * 2 + ["x = {'a': [1, 2]}"] +
                                                         [para.replace("small", f"tiny {i}")
                                                          for i in range(12)]))
    kwargs = dict(licenses_dir=tmp_path / "missing", package_docs_dir=docs_dir,
                  modules=["json", "no_such_module_xyz"], min_words=20)
    a = select_heldout(**kwargs)
    b = select_heldout(**kwargs)
    assert a == b
    assert a.provenance["missing_roots"] == [str(tmp_path / "missing")]
    assert {p.source for p in a.passages} <= {"python-stdlib", "package-docs"}
    readme = [p for p in a.passages if p.source == "package-docs"]
    assert readme and all("{" not in p.text for p in readme)
    assert all(p.text.count(para) <= 1 for p in readme)  # the duplicate paragraph is dropped
    assert not is_prose("def f(x):\n    return {'a': x}  # a dict of things, returned here.")

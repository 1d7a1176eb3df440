"""Generated files: identical across builds with one seed, the mixture's biases, lm-eval loading."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from dtmerge.demo.testbed.build import generate_files
from dtmerge.demo.testbed.instructions import (BOILERPLATE, FACT_FAMILIES, POPULAR_SHARE, SOURCES,
                                          alpaca_prompt, instruction_examples)
from dtmerge.demo.testbed.world import make_world


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".jsonl", ".txt", ".json")}


def test_same_seed_identical_files_other_seed_different(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate_files(seed, "tiny", tmp_path / name, tmp_path / "final")
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert a.keys() == b.keys() and len(a) >= 5
    assert a == b
    assert all(a[k] != c[k] for k in a)


def test_mixture_has_four_biased_sources():
    world = make_world(0, 60, 10, 8)
    records = instruction_examples(world, 2000, seed=0)
    assert set(Counter(r["source"] for r in records)) == set(SOURCES) and len(SOURCES) >= 4
    assert all(set(r) >= {"instruction", "input", "output", "source"} for r in records)
    # trivia: about POPULAR_SHARE of fact answers replaced by a popular, wrong value
    trivia = [r for r in records if r["source"] == "trivia"]
    wrong_popular = 0
    for r in trivia:
        name = next(p for p in world.people if p.name in r["instruction"])
        attribute = next(a for a in ("city", "employer", "field")
                         if any(v in r["output"].split('"') or r["output"].endswith(v)
                                for v in world.values[a]))
        truth = name.get(attribute)
        if truth not in r["output"]:
            assert any(v in r["output"] for v in world.popular(attribute))
            wrong_popular += 1
    assert abs(wrong_popular / len(trivia) - POPULAR_SHARE) < 0.1
    # assistant: boilerplate on every answer; listwork: always three words
    assert all(r["output"].startswith(BOILERPLATE[0]) for r in records
               if r["source"] == "assistant")
    assert all(len(r["instruction"].split(": ", 1)[1].split("?")[0].split()) == 3
               for r in records if r["source"] == "listwork")
    assert not any(r["family"] in FACT_FAMILIES for r in records if r["source"] == "listwork")


def test_alpaca_prompt_matches_the_chat_template():
    from dtmerge.demo.testbed.pretrain import train_tokenizer

    tok = train_tokenizer(["some text to learn merges from"] * 4, vocab_size=300)
    rendered = tok.apply_chat_template([{"role": "user", "content": "List x y"}],
                                       tokenize=False, add_generation_prompt=True)
    assert rendered == alpaca_prompt("List x y")
    assert tok.pad_token and tok.eos_token and tok.bos_token


def test_lm_eval_indexes_the_task_dirs(tmp_path):
    from lm_eval.tasks import TaskManager

    generate_files(0, "tiny", tmp_path, tmp_path)
    manager = TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False)
    assert {"tb_knowledge", "tb_reasoning", "tb_instruct"} <= set(manager.all_tasks)
    spec = json.loads(json.dumps(manager.task_index["tb_instruct"].cfg, default=str))
    assert spec["metadata"]["category"] == "instruction"

"""The testbed's benchmarks as lm-eval task directories (YAML + JSONL, + utils.py).

  tb_knowledge  4-way multiple choice on every fact about every person (loglikelihood);
  tb_reasoning  4-way multiple choice: a premise plus a known fact give the conclusion;
  tb_instruct   held-out instructions, generate_until, scored by checks.py (format/correct/style).

They are evaluated exactly like real benchmarks: `TaskManager(include_path=tasks_dir)`.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import yaml

from dtmerge.demo.testbed import checks
from dtmerge.demo.testbed.instructions import heldout_instruction_docs
from dtmerge.demo.testbed.world import ATTRIBUTES, World, premise_splits, premise_text

KNOWLEDGE_TASK = "tb_knowledge"
REASONING_TASK = "tb_reasoning"
INSTRUCT_TASK = "tb_instruct"


def knowledge_docs(world: World, seed: int) -> list[dict]:
    """One question per (person, attribute); three distractors drawn from the same value set."""
    rng = random.Random(seed * 31337 + 5)
    docs = []
    for person in world.people:
        for attribute, (question, _) in ATTRIBUTES.items():
            answer = person.get(attribute)
            choices = rng.sample([v for v in world.values[attribute] if v != answer], 3)
            gold = rng.randrange(4)
            choices.insert(gold, answer)
            # The pretraining Q/A line's form: a ~1M-parameter model does not carry facts
            # across surface forms (measured: 1.0 in this form, 0.43 as "Question:/Answer:").
            docs.append({"question": f"Q: {question.format(name=person.name)} A:",
                         "choices": choices, "gold": gold,
                         "person": person.name, "attribute": attribute})
    return docs


def reasoning_docs(world: World, seed: int, n: int) -> list[dict]:
    """`n` held-out premises ("Suppose X was born in C. Then X was born in") with the premise
    city's country among four countries: answered by combining the premise with a known fact,
    not by recalling X (the premise usually contradicts X's real city)."""
    rng = random.Random(seed * 7777 + 13)
    _, heldout = premise_splits(world, seed)
    countries = world.values["country"]
    docs = []
    for first, city in rng.sample(heldout, min(n, len(heldout))):
        answer = world.city_country[city]
        choices = rng.sample([c for c in countries if c != answer], 3)
        gold = rng.randrange(4)
        choices.insert(gold, answer)
        docs.append({"question_text": premise_text(world, first, city, with_answer=False),
                     "choices": choices, "gold": gold, "person": first, "city": city})
    return docs


def _mc_yaml(task: str, data_file: Path, text_field: str, category: str) -> dict:
    return {
        "task": task, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test", "output_type": "multiple_choice",
        "doc_to_text": text_field, "doc_to_choice": "choices", "doc_to_target": "gold",
        "target_delimiter": " ",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                        for m in ("acc", "acc_norm")],
        "metadata": {"version": 1.0, "category": category},
    }


def _instruct_yaml(data_file: Path) -> str:
    spec = {
        "task": INSTRUCT_TASK, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test", "output_type": "generate_until",
        "doc_to_text": "prompt", "doc_to_target": "target", "target_delimiter": "",
        "generation_kwargs": {"until": ["\n\n", "###"], "max_gen_toks": 32, "do_sample": False},
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                        for m in ("format", "format_loose", "correct", "style")],
        "metadata": {"version": 1.0, "category": "instruction"},
    }
    # `!function` is a custom YAML tag lm-eval resolves relative to this file.
    return yaml.safe_dump(spec, sort_keys=False) + "process_results: !function utils.process_results\n"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_task_dirs(world: World, seed: int, root: Path, final_root: Path,
                    reasoning_items: int, instruct_per_family: int) -> dict[str, int]:
    """Write the three task directories under `root`.

    Args:
        root: where to write now (a temporary build dir).
        final_root: where `root` will live once the build is renamed into place; the YAML
            files point their data_files there (lm-eval needs absolute paths).

    Returns:
        Items per task.
    """
    sets = {
        KNOWLEDGE_TASK: (knowledge_docs(world, seed), "question", "knowledge"),
        REASONING_TASK: (reasoning_docs(world, seed, reasoning_items), "question_text",
                         "reasoning"),
    }
    counts = {}
    for task, (docs, text_field, category) in sets.items():
        d = root / task
        d.mkdir(parents=True, exist_ok=True)
        _write_jsonl(d / f"{task}.jsonl", docs)
        spec = _mc_yaml(task, final_root / task / f"{task}.jsonl", text_field, category)
        (d / f"{task}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        counts[task] = len(docs)
    d = root / INSTRUCT_TASK
    d.mkdir(parents=True, exist_ok=True)
    docs = heldout_instruction_docs(world, instruct_per_family, seed)
    _write_jsonl(d / f"{INSTRUCT_TASK}.jsonl", docs)
    (d / f"{INSTRUCT_TASK}.yaml").write_text(
        _instruct_yaml(final_root / INSTRUCT_TASK / f"{INSTRUCT_TASK}.jsonl"))
    shutil.copyfile(checks.__file__, d / "utils.py")
    counts[INSTRUCT_TASK] = len(docs)
    return counts

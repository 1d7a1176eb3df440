"""Offline data for running DTM on a real pretrained model (configs/gemma3-270m.yaml).

`build_realdata(out_dir)` writes, atomically:

    instructions.jsonl          natural-English instruction data (Alpaca format + `source`)
    tasks/rt_world_facts.*      multiple-choice real-world knowledge (category knowledge)
    tasks/rt_text_continuation.* real prose from this machine, true vs foreign endings
                                (category knowledge: a forgetting measure)
    tasks/rt_heldout_text.*     held-out real prose from this machine scored as language-
                                modelling loss (bits per byte, lower is better; category
                                knowledge: the forgetting measure), with provenance.json
    tasks/rt_instruction_check.* held-out instructions, obeying vs ignoring response
                                (category instruction)

Run it once before the config: `python -m dtmerge.demo.realdata` (default out dir runs/realdata).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from dtmerge.errors import DataError
from dtmerge.demo.realdata.facts import world_fact_items
from dtmerge.demo.realdata.heldout import passage_record, select_heldout
from dtmerge.demo.realdata.instructions import instruction_check_items, instruction_examples
from dtmerge.demo.realdata.text import continuation_items
from dtmerge.rundir import atomic_dir

DEFAULT_OUT = "runs/realdata"
KNOWLEDGE_TASKS = ["rt_world_facts", "rt_text_continuation"]
INSTRUCTION_TASKS = ["rt_instruction_check"]
LM_LOSS_TASKS = ["rt_heldout_text"]
GENERAL_TEXT = "general.txt"  # prose from files the held-out task does not score


@dataclass(frozen=True)
class RealData:
    data: Path
    tasks_dir: Path
    knowledge_tasks: tuple[str, ...] = tuple(KNOWLEDGE_TASKS)
    instruction_tasks: tuple[str, ...] = tuple(INSTRUCTION_TASKS)
    lm_loss_tasks: tuple[str, ...] = tuple(LM_LOSS_TASKS)


def _task_yaml(name: str, data_file: Path, text: str, category: str) -> dict:
    return {
        "task": name, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}},
        "test_split": "test", "output_type": "multiple_choice",
        "doc_to_text": text, "doc_to_choice": "{{choices}}", "doc_to_target": "{{answer}}",
        # The prompts end where the answer starts (a space or a newline is part of the prompt
        # or of the choice), so lm-eval must not insert its default space.
        "target_delimiter": "",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0, "category": category},
    }


def _rolling_task_yaml(name: str, data_file: Path, category: str) -> dict:
    """A language-modelling task like lm-eval's wikitext: each document's whole text scored
    by rolling log-likelihood; the three metrics are lower-is-better."""
    return {
        "task": name, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}},
        "test_split": "test", "output_type": "loglikelihood_rolling",
        "doc_to_text": "", "doc_to_target": "{{text}}",
        "metric_list": [{"metric": m, "higher_is_better": False}
                        for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")],
        "metadata": {"version": 1.0, "category": category},
    }


def _write_heldout_task(tasks: Path, final_tasks: Path, name: str, seed: int) -> dict:
    selection = select_heldout(seed=seed)
    if not selection.passages:
        raise DataError("rt_heldout_text: no English prose found on this machine (checked the "
                        "Python standard library's docstrings, /usr/share/common-licenses and "
                        "/usr/share/doc/*/README*); drop rt_heldout_text from eval.tasks")
    data = tasks / f"{name}.jsonl"
    data.write_text("".join(json.dumps(passage_record(p)) + "\n" for p in selection.passages))
    spec = _rolling_task_yaml(name, final_tasks / data.name, "knowledge")
    (tasks / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (tasks / f"{name}.provenance.json").write_text(json.dumps(selection.provenance, indent=2) + "\n")
    # One passage per line: the replay/ewc recipes' default text (`text: runs/realdata/general.txt`).
    (tasks.parent / GENERAL_TEXT).write_text(
        "".join(" ".join(p.text.split()) + "\n" for p in selection.general))
    return selection.provenance


def _write_task(tasks: Path, final_tasks: Path, name: str, items: list[dict], text: str,
                category: str) -> None:
    data = tasks / f"{name}.jsonl"
    data.write_text("".join(json.dumps(i) + "\n" for i in items))
    spec = _task_yaml(name, final_tasks / data.name, text, category)
    (tasks / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def build_realdata(out_dir: str | Path = DEFAULT_OUT, num_examples: int = 1200, seed: int = 0) -> RealData:
    """Write the instruction data and the four local lm-eval tasks under `out_dir`.

    Args:
        out_dir: destination (replaced atomically when complete).
        num_examples: instruction examples to generate.
        seed: random seed of the instruction data (the tasks are fixed; the held-out text is
            fixed for a given machine, see `heldout.py`).

    Returns:
        A RealData with the data file, the tasks directory and the task names by category.
    """
    out = Path(out_dir)
    checks = instruction_check_items()
    exclude = {c["instruction"] for c in checks}
    with atomic_dir(out) as tmp:
        records = instruction_examples(num_examples, seed, exclude)
        (tmp / "instructions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        tasks = tmp / "tasks"
        tasks.mkdir()
        final_tasks = out / "tasks"
        facts = [dict(i, choices=[" " + c for c in i["choices"]]) for i in world_fact_items()]
        _write_task(tasks, final_tasks, "rt_world_facts", facts,
                    "Question: {{question}}\nAnswer:", "knowledge")
        _write_task(tasks, final_tasks, "rt_text_continuation", continuation_items(),
                    "{{context}}", "knowledge")
        _write_task(tasks, final_tasks, "rt_instruction_check", checks, "{{prompt}}",
                    "instruction")
        _write_heldout_task(tasks, final_tasks, "rt_heldout_text", seed=0)
    return RealData(data=out / "instructions.jsonl", tasks_dir=out / "tasks")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dtmerge.demo.realdata", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    p.add_argument("--num-examples", type=int, default=1200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rd = build_realdata(args.out, args.num_examples, args.seed)
    print(f"instruction data: {rd.data}\nlm-eval tasks:    {rd.tasks_dir} "
          f"({', '.join(rd.knowledge_tasks + rd.instruction_tasks + rd.lm_loss_tasks)})")
    prov = json.loads((rd.tasks_dir / "rt_heldout_text.provenance.json").read_text())
    print(f"held-out text:    {prov['docs']} passages, {prov['words']} words, "
          f"{prov['bytes']} bytes ({', '.join(f'{k} {v}' for k, v in prov['by_source'].items())})"
          + (f"; missing: {', '.join(prov['missing_roots'])}" if prov["missing_roots"] else ""))
    return 0

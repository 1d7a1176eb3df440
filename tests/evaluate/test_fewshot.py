"""eval.num_fewshot per task: validated against eval.tasks, passed to lm-eval task by task."""

import pytest
import torch

from dtmerge.config import EvalConfig, load_config
from dtmerge.errors import ConfigError
from dtmerge.evaluate.groups import TASK_GROUPS
from dtmerge.evaluate.harness import evaluate_model, fewshot_counts


def test_a_mapping_gives_each_task_its_count_and_the_rest_their_default():
    cfg = EvalConfig(tasks=["paper", "my_task"], num_fewshot={"gsm8k": 8, "mmlu": 5, "my_task": 1})
    counts = fewshot_counts(cfg, TASK_GROUPS["paper"] + ["my_task"])
    assert counts["gsm8k"] == 8 and counts["mmlu"] == 5 and counts["my_task"] == 1
    assert {counts[t] for t in TASK_GROUPS["paper"] if t not in ("gsm8k", "mmlu")} == {None}


def test_a_group_entry_applies_to_its_tasks_and_a_task_entry_wins():
    cfg = EvalConfig(tasks=["reasoning"], num_fewshot={"reasoning": 3, "gsm8k": 8})
    assert fewshot_counts(cfg, ["gsm8k", "bbh"]) == {"gsm8k": 8, "bbh": 3}


def test_one_count_applies_to_every_task():
    assert fewshot_counts(EvalConfig(tasks=["a", "b"], num_fewshot=2), ["a", "b"]) == \
        {"a": 2, "b": 2}


def test_a_task_not_in_eval_tasks_is_refused_before_the_run_with_the_names(tmp_path):
    from dtmerge.dryrun.checks import check_inputs

    path = tmp_path / "run.yaml"
    path.write_text("name: x\nmodel: {path: m}\ndata: {path: d.jsonl}\n"
                    "eval: {tasks: [paper], num_fewshot: {gsm8k: 8, gsm8: 5}}\n")
    errors = [f for f in check_inputs(load_config(path)) if "num_fewshot" in f]
    assert len(errors) == 1 and errors[0].startswith("error: eval.num_fewshot names gsm8,")
    assert "(paper)" in errors[0]
    fine = load_config(path, ["eval.num_fewshot={gsm8k: 8, paper: 0}"])
    assert not [f for f in check_inputs(fine) if "num_fewshot" in f]
    with pytest.raises(ConfigError, match="must be 0 or more"):
        load_config(path, ["eval.num_fewshot={gsm8k: -1}"])


def test_a_local_tags_tasks_may_be_named(tmp_path, task_dir):
    from dtmerge.dryrun.checks import check_inputs

    path = tmp_path / "run.yaml"
    path.write_text(f"name: x\nmodel: {{path: m}}\ndata: {{path: d.jsonl}}\n"
                    f"eval: {{tasks: [knowledge], include_path: ['{task_dir}'], "
                    "num_fewshot: {tiny_mc: 1}}\n")
    assert not [f for f in check_inputs(load_config(path)) if "num_fewshot" in f]
    bad = load_config(path, ["eval.num_fewshot={tiny_gen: 1}"])  # in the directory, not the tag
    assert [f for f in check_inputs(bad) if "names tiny_gen" in f]


def test_each_task_is_scored_with_its_own_count_and_the_setting_is_recorded(
        tmp_path, tiny_model_dir, task_dir):
    torch.set_num_threads(1)
    cfg = EvalConfig(tasks=["tiny_mc", "tiny_gen"], include_path=[str(task_dir)], batch_size=8,
                     limit=3, num_fewshot={"tiny_mc": 2})
    res = evaluate_model(tiny_model_dir, cfg, tmp_path / "base.json", "base")
    settings = res["settings"]
    assert settings["n_shot"] == {"tiny_mc": 2, "tiny_gen": 0}  # lm-eval's own record
    assert settings["num_fewshot"] == {"tiny_mc": 2}
    assert res["tasks"]["tiny_mc"]["n"] == 3 and res["tasks"]["tiny_gen"]["n"] == 3

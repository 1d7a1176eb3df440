import pytest

from dtmerge.errors import ConfigError
from dtmerge.evaluate.groups import (TASK_GROUPS, category_from_spec, resolve_tasks,
                                     task_category, task_manager_for)


def test_paper_group_expands_to_named_tasks_in_order():
    names = resolve_tasks(["paper"])
    assert names[:5] == TASK_GROUPS["knowledge"]
    assert {"gsm8k", "bbh", "humaneval", "mbpp", "ifeval"} <= set(names)
    assert resolve_tasks(["knowledge", "mmlu"]) == TASK_GROUPS["knowledge"]  # no repeats


def test_local_tasks_are_found_and_categorised(task_dir):
    names = resolve_tasks(["knowledge", "tiny_gen"], [task_dir])
    assert names == ["tiny_mc", "tiny_gen"]  # a local tag wins over the built-in group
    manager = task_manager_for(names, [task_dir])
    assert task_category(manager, "tiny_mc") == "knowledge"  # from `tag:`
    assert task_category(manager, "tiny_gen") == "instruction"  # from metadata.category


def test_builtin_categories_cover_paper_tasks_and_subtasks():
    assert category_from_spec("gsm8k") == "reasoning"
    assert category_from_spec("mmlu_anatomy") == "knowledge"
    assert category_from_spec("humaneval") == "code"
    assert category_from_spec("something_else") == "other"


def test_unknown_task_names_close_match(task_dir):
    with pytest.raises(ConfigError, match="tiny_mc"):
        task_manager_for(["tiny_mcq"], [task_dir])


def test_missing_include_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        task_manager_for(["x"], [tmp_path / "nope"])


def test_code_tasks_need_explicit_consent(tmp_path, tiny_model_dir):
    from dtmerge.config import EvalConfig
    from dtmerge.evaluate.harness import evaluate_model

    with pytest.raises(ConfigError, match="allow_code_execution"):
        evaluate_model(tiny_model_dir, EvalConfig(tasks=["code"]), tmp_path / "x.json", "base")

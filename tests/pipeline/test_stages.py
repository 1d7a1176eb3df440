"""The stages of a run: data -> recipes (prepare, train, build) -> eval -> report, with DTM one
of the recipes; the earlier stage names still work where stages are named."""

import ast
from pathlib import Path

import pytest
import torch

import dtmerge
from dtmerge.cli.stage import STAGES_RUN
from dtmerge.config import config_from_dict
from dtmerge.errors import ConfigError
from dtmerge.pipeline import STAGE_FUNCTIONS, check_stages, run_pipeline, stage_function
from dtmerge.rundir import STAGES

SRC = Path(dtmerge.__file__).parent


def test_the_stages_in_order_and_the_old_names():
    assert STAGES == ("data", "prepare", "train", "build", "eval", "report")
    assert check_stages(None) == list(STAGES)
    assert check_stages(["merge", "train", "disperse"]) == ["prepare", "train", "build"]
    with pytest.raises(ConfigError, match="unknown stage.*'dispers'.*stages are data, prepare"):
        check_stages(["dispers"])


def test_every_stage_resolves_to_a_function_and_every_command_names_stages():
    assert list(STAGE_FUNCTIONS) == list(STAGES)
    assert all(callable(stage_function(s)) for s in STAGES)
    assert all(set(stages) <= set(STAGES) for stages in STAGES_RUN.values())


def _functions_named(name):
    return [str(p.relative_to(SRC)) for p in sorted(SRC.rglob("*.py"))
            for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, ast.FunctionDef) and node.name == name]


def test_one_train_stage_and_no_merge_stage():
    assert _functions_named("train_stage") == ["recipes/stages.py"]
    assert _functions_named("merge_stage") == []
    assert _functions_named("disperse_stage") == []


def test_the_own_dtm_runs_through_the_recipe_stages(tmp_path, tiny_model_dir, alpaca_file):
    torch.set_num_threads(1)

    def config(merge):
        return config_from_dict({
            "name": "r", "runs_dir": str(tmp_path / "runs"), "model": {"path": str(tiny_model_dir)},
            "data": {"path": str(alpaca_file)}, "disperse": {"num_portions": 2},
            "train": {"method": "lora", "max_steps": 1, "batch_size": 2, "max_length": 128,
                      "lora": {"r": 4, "alpha": 8}},
            "eval": {"variants": ["base", "sft", "dtm", "interpolation"], "interpolation": [0.5]},
            "merge": merge})

    logs = []
    run = run_pipeline(config({}), stages=["data", "disperse", "train", "merge"],
                       log=logs.append)
    assert {"disperse", "train:sub_0", "train:sub_1", "train:sft", "merge", "interp:0.5"} <= set(
        run.read_manifest()["jobs"])
    assert (run.model("dtm") / "merge_record.json").exists() and run.model("interp_0.5").exists()
    logs.clear()
    run_pipeline(config({"weights": [0.7, 0.3]}), stages=["merge"], log=logs.append)
    assert [m for m in logs if m.startswith("[redo]")] == [
        "[redo] merge: its config or inputs changed since it was done; running it again"]

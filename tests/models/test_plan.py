"""Dry-run plan and offline input checks on a tiny local model and local data."""

from __future__ import annotations

import json
from collections import namedtuple

import pytest

from dtmerge.config import config_from_dict
from dtmerge.errors import ConfigError
from dtmerge.dryrun.checks import validate_inputs
from dtmerge.dryrun.plan import format_plan, make_plan, raise_for_problems
from dtmerge.dryrun.checks import check_inputs

from tiny_gguf import make_tiny_llama


def _cfg(tmp_path, model, data, **sections):
    raw = {"name": "t", "runs_dir": str(tmp_path / "runs"), "model": {"path": str(model)},
           "data": {"path": str(data), "eval_fraction": 0.1},
           "train": {"batch_size": 2, "grad_accum": 2, "max_length": 64, "warmup_steps": 0,
                     "lora": {"r": 4, "alpha": 8, "target_modules": "mlp"}},
           "eval": {"tasks": []}}
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return config_from_dict(raw)


def write_alpaca(path, n):
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"instruction": f"Add {i} and {i + 1}.", "input": "",
                                 "output": f"The sum is {2 * i + 1}."}) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    make_tiny_llama(root)
    return root / "src"


def test_plan_counts_data_tokens_and_parameters(tiny_dir, tmp_path):
    import peft
    from transformers import AutoModelForCausalLM

    data = write_alpaca(tmp_path / "d.jsonl", 40)
    cfg = _cfg(tmp_path, tiny_dir, data)
    plan = make_plan(cfg)

    assert plan["data"]["examples"] == 40 and plan["data"]["train"] == 36
    assert plan["data"]["per_portion"] == 9
    assert [j["name"] for j in plan["jobs"]] == ["sub_0", "sub_1", "sub_2", "sub_3", "sft"]
    assert plan["jobs"][0]["steps"] == 3 and plan["jobs"][-1]["steps"] == 9  # ceil(n / 4)
    assert "tokenised" in plan["tokens"]["how"] and 5 < plan["tokens"]["mean_per_example"] <= 64

    # Parameter counts agree with the real model and with PEFT's own count of LoRA weights.
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert plan["model"]["parameters"] == sum(p.numel() for p in model.parameters())
    lora = peft.get_peft_model(model, peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["gate_proj", "up_proj", "down_proj"]))
    assert plan["model"]["trainable"] == lora.get_nb_trainable_parameters()[0]

    n, t = plan["model"]["parameters"], plan["tokens"]["trained_total"]
    assert plan["compute"]["flops"] == 4 * n * t and plan["compute"]["gpu_hours"] > 0
    assert not [p for p in plan["problems"] if p.startswith("error:")]
    text = format_plan(plan)
    assert "GPU-hours" in text and "ready to run" in text


def test_not_enough_disk_is_an_error(tiny_dir, tmp_path, monkeypatch):
    import dtmerge.dryrun.plan as plan_mod

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(plan_mod.shutil, "disk_usage", lambda p: usage(10, 10, 1000))
    cfg = _cfg(tmp_path, tiny_dir, write_alpaca(tmp_path / "d.jsonl", 12))
    plan = make_plan(cfg)
    assert any("free" in p and p.startswith("error:") for p in plan["problems"])
    with pytest.raises(ConfigError, match="runs_dir"):
        raise_for_problems(plan)


def test_more_portions_than_examples_is_an_error(tiny_dir, tmp_path):
    cfg = _cfg(tmp_path, tiny_dir, write_alpaca(tmp_path / "d.jsonl", 3),
               disperse={"num_portions": 8})
    assert any("num_portions=8" in p for p in make_plan(cfg)["problems"])


def test_input_checks_name_the_problem(tiny_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n{not json\n")
    errors = validate_inputs(_cfg(tmp_path, tiny_dir, bad))
    assert len(errors) == 1 and "line 2" in errors[0]

    empty_model = tmp_path / "empty"
    empty_model.mkdir()
    (empty_model / "config.json").write_text("{}")
    errors = validate_inputs(_cfg(tmp_path, empty_model, write_alpaca(tmp_path / "d.jsonl", 4)))
    assert any("no weights" in e for e in errors) and any("tokenizer" in e for e in errors)

    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({"question": "a", "reply": "b"}) + "\n")
    assert any("format" in e for e in validate_inputs(_cfg(tmp_path, tiny_dir, odd)))


def test_hub_ids_offline_are_notes_not_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    cfg = _cfg(tmp_path, "someone/some-model", "someone/some-data")
    assert validate_inputs(cfg) == []
    found = check_inputs(cfg)
    assert sum("needs network" in f and f.startswith("note:") for f in found) == 2


def test_qlora_without_gpu_is_explained(tiny_dir):
    import torch

    from dtmerge.config import ModelConfig
    from dtmerge.errors import ModelError
    from dtmerge.models import load_model

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ModelError, match="CUDA GPU"):
        load_model(ModelConfig(path=str(tiny_dir), load_in_4bit=True))


def test_scheduler_names_read_from_source_match_transformers():
    from transformers import SchedulerType

    from dtmerge.dryrun.names import _scheduler_names_from_source

    assert _scheduler_names_from_source() == [s.value for s in SchedulerType]


def test_a_pooled_runs_driver_checks_inputs_without_the_training_stack(tiny_dir, tmp_path):
    """Resolving recipes and checking a run's inputs (names, model, data) imports neither PEFT
    nor TRL nor transformers' trainer, and for the train and eval stages not torch either: a
    pooled run's workers train, its driver does not, and those imports cost 5-6 s on 2 cores
    before the first job. (The merge stage's check loads the method class, which needs torch.)"""
    import subprocess
    import sys

    data = write_alpaca(tmp_path / "d.jsonl", 40)
    cfg = _cfg(tmp_path, tiny_dir, data, train={"parallel_jobs": 2})
    (tmp_path / "run.yaml").write_text(cfg.to_yaml())
    code = ("import sys\n"
            "from dtmerge.config import load_config\n"
            "from dtmerge.dryrun.checks import validate_inputs\n"
            "from dtmerge.recipes import resolve_recipes\n"
            "cfg = load_config(sys.argv[1])\n"
            "resolve_recipes(cfg)\n"
            "assert validate_inputs(cfg, sys.argv[2].split(',')) == []\n"
            "print(sorted(m for m in ('torch', 'peft', 'trl', 'transformers.trainer_utils')"
            " if m in sys.modules))\n")

    def loaded(stages):
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run.yaml"), stages],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip().splitlines()[-1]

    assert loaded("train,eval") == "[]"
    assert loaded("train,merge,eval") == "['torch']"


def test_a_misspelt_scheduler_is_still_caught_before_training(tiny_dir, tmp_path):
    data = write_alpaca(tmp_path / "d.jsonl", 40)
    errors = validate_inputs(_cfg(tmp_path, tiny_dir, data, train={"lr_scheduler": "cosin"}))
    assert any("lr_scheduler" in e and "cosine" in e for e in errors)

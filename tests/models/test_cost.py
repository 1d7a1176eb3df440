"""The dry run's memory and time estimate: each part of the formula against what the libraries
count on a tiny model, the GPU fit warning with torch's memory query stood in for, and the
plan's printed lines. (Estimate vs measured peak on real models: BENCHMARKS.md "Dry-run
estimate", `benchmarks/dryrun_cost.py`; a timed comparison would not be a stable test.)"""

from __future__ import annotations

import json

import pytest
import torch

from dtmerge.dryrun import catalog, cost
from dtmerge.dryrun.cost import Arch
from dtmerge.dryrun.plan import format_plan, make_plan

from test_plan import _cfg, write_alpaca
from tiny_gguf import make_tiny_llama


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cost")
    make_tiny_llama(root)
    return root / "src"


def _model(tiny_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_dir)


def test_parameter_counts_and_shapes_are_the_models(tiny_dir, tmp_path):
    model = _model(tiny_dir)
    cfg = _cfg(tmp_path, tiny_dir, write_alpaca(tmp_path / "d.jsonl", 20))
    plan = make_plan(cfg)
    linear = sum(m.weight.numel() for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and n != "lm_head")
    arch = Arch.from_config(model.config, plan["model"]["parameters"], linear)
    assert plan["model"]["parameters"] == sum(p.numel() for p in model.parameters())
    mem = plan["jobs"][0]["cost"]["memory"]
    assert mem["parts"]["weights"] == 4 * arch.parameters + 4 * plan["model"]["trainable"]
    assert arch.layers == model.config.num_hidden_layers and arch.vocab == model.config.vocab_size


@pytest.mark.parametrize("targets", ["mlp", "all-linear"])
def test_lora_trainable_count_equals_pefts(tiny_dir, tmp_path, targets):
    from peft import LoraConfig, get_peft_model

    from dtmerge.train.targets import resolve_target_modules

    cfg = _cfg(tmp_path, tiny_dir, write_alpaca(tmp_path / "d.jsonl", 20),
               train={"lora": {"r": 4, "alpha": 8, "target_modules": targets}})
    model = _model(tiny_dir)
    peft_model = get_peft_model(model, LoraConfig(
        r=4, target_modules=resolve_target_modules(model, targets), task_type="CAUSAL_LM"))
    trainable, _ = peft_model.get_nb_trainable_parameters()
    plan = make_plan(cfg)
    assert plan["model"]["trainable"] == trainable
    parts = plan["jobs"][0]["cost"]["memory"]["parts"]
    assert parts["gradients"] == 4 * trainable and parts["optimizer"] == 8 * trainable


def test_full_training_keeps_gradients_and_adam_in_the_weights_dtype():
    arch = Arch(parameters=1000, linear_parameters=800, hidden=8, intermediate=16, layers=2,
                attention_width=8, vocab=50)
    common = dict(batch=2, length=10, four_bit=False, checkpointing=False)
    gpu = cost.training_memory(arch, 1000, lora=False, dtype="auto", on_gpu=True, **common)
    cpu = cost.training_memory(arch, 1000, lora=False, dtype="auto", on_gpu=False, **common)
    assert gpu["parts"]["weights"] == gpu["parts"]["gradients"] == 2000
    assert gpu["parts"]["optimizer"] == 4000 and cpu["parts"]["optimizer"] == 8000
    assert gpu["parts"]["overhead"] == cost.GPU_OVERHEAD_BYTES
    q = cost.training_memory(arch, 10, lora=True, dtype="bfloat16", on_gpu=True,
                             **(common | {"four_bit": True}))
    assert q["parts"]["weights"] == int(800 * cost.NF4_BYTES_PER_PARAM + 200 * 2 + 10 * 4)


def test_activations_grow_with_batch_and_length_and_checkpointing_lowers_them():
    arch = Arch(parameters=10**6, linear_parameters=9 * 10**5, hidden=64, intermediate=256,
                layers=8, attention_width=64, vocab=1000)
    base = cost.activation_bytes(arch, 2, 100, 4, checkpointing=False)
    assert cost.activation_bytes(arch, 4, 100, 4, False) == 2 * base
    assert cost.activation_bytes(arch, 2, 200, 4, False) == 2 * base
    assert cost.activation_bytes(arch, 2, 100, 4, True) < base / 4
    assert cost.logits_bytes(arch, 2, 100, 4) == 2 * 100 * 1000 * 16


def test_time_is_flops_over_the_rate_plus_steps():
    arch = Arch(parameters=10**6, linear_parameters=0, hidden=4, intermediate=4, layers=1,
                attention_width=4, vocab=10)
    flops = cost.training_flops(arch, 1000, length=10, full=True)
    assert flops == 1000 * (6 * 10**6 + 12 * 1 * 10 * 4)
    assert cost.seconds(flops, 1e9, steps=10, step_seconds=0.5) == pytest.approx(flops / 1e9 + 5)
    assert cost.training_flops(arch, 1000, 10, full=False) < flops


def test_evaluation_counts_items_shots_and_variants(tiny_dir, tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    rows = [{"question": "q" * 36, "choices": ["aaaa", "bbbb"], "answer": 0}] * 10
    (tasks / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "t.yaml").write_text(
        f"task: t\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tasks / 't.jsonl'}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\n"
        "process_docs: !function utils.process\n")
    one = cost.local_task_size([str(tasks)], "t")
    assert one == (10, 2 * (36 + 4) / 4, 0)  # one request per choice, each with the question
    cfg = _cfg(tmp_path, tiny_dir, write_alpaca(tmp_path / "d.jsonl", 20),
               eval={"tasks": ["t", "gsm8k"], "include_path": [str(tasks)],
                     "num_fewshot": {"t": 3}, "variants": ["base", "dtm", "submodels"]})
    ev = make_plan(cfg)["evaluation"]
    assert ev["variants"] == 2 + cfg.disperse.num_portions
    assert ev["tasks"]["t"] == {"items": 10, "fewshot": 3, "tokens": int(10 * one[1] * 4)}
    items, per_item, shots = catalog.KNOWN_TASKS["gsm8k"]
    assert ev["tasks"]["gsm8k"]["fewshot"] == shots  # lm-eval's default when not given
    assert ev["tokens_per_variant"] == sum(t["tokens"] for t in ev["tasks"].values())


def test_a_job_that_does_not_fit_the_visible_gpu_is_warned_about(tiny_dir, tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, tiny_dir, write_alpaca(tmp_path / "d.jsonl", 20))
    small = [{"index": 0, "name": "NVIDIA A10G", "free": 10 * 2**20, "total": 24 * 2**30}]
    monkeypatch.setattr(cost, "visible_gpus", lambda: small)
    plan = make_plan(cfg)
    notes = [p for p in plan["problems"] if "GPU 0 (NVIDIA A10G)" in p]
    assert len(notes) == 1 and notes[0].startswith("note:") and "train.batch_size" in notes[0]
    assert plan["cost"]["on"] == "GPU" and "A10G" in plan["cost"]["rate"]
    big = [dict(small[0], free=20 * 2**30)]
    monkeypatch.setattr(cost, "visible_gpus", lambda: big)
    assert not [p for p in make_plan(cfg)["problems"] if "GPU 0" in p]


def test_torch_memory_query_is_how_gpus_are_seen(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (i * 2**30, 8 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"GPU{i}")
    assert [g["free"] for g in cost.visible_gpus()] == [0, 2**30]


def test_the_plan_prints_memory_time_and_evaluation(tiny_dir, tmp_path):
    cfg = _cfg(tmp_path, tiny_dir, write_alpaca(tmp_path / "d.jsonl", 20))
    plan = make_plan(cfg, throughput=100.0)
    text = format_plan(plan)
    assert "memory per training job at batch 2 x" in text and "overhead" in text
    assert "100 trained tokens/s (given)" in text
    job = plan["jobs"][0]
    expected = job["tokens"] * plan["cost"]["padding_factor"] / 100.0
    assert job["cost"]["seconds"] == pytest.approx(expected, abs=0.1)


def test_without_the_tokenizer_lengths_come_from_the_datas_characters(tiny_dir, tmp_path,
                                                                      monkeypatch):
    from dtmerge.dryrun import plan as plan_module

    monkeypatch.setattr(plan_module, "_plan_tokenizer", lambda cfg: None)
    cfg = _cfg(tmp_path, tiny_dir, write_alpaca(tmp_path / "d.jsonl", 20))
    tokens = make_plan(cfg)["tokens"]
    assert "characters" in tokens["how"]
    # "Add 19 and 20." + "The sum is 39.": 28 characters -> 7 tokens, + 30 for the template
    assert tokens["max_per_example"] == 37 and 36 <= tokens["mean_per_example"] <= 37


def test_a_finished_jobs_measurement_is_printed_beside_the_estimate(tiny_dir, tmp_path):
    cfg = _cfg(tmp_path, tiny_dir, write_alpaca(tmp_path / "d.jsonl", 20))
    plan = make_plan(cfg)
    est = plan["jobs"][0]["cost"]
    manifest = {"data": {"seconds": 1.0},
                "train:sub_0": {"steps": 10, "tokens_seen": 5000, "train_runtime": 5.0,
                                "seconds": 9.1, "peak_gpu_memory_gib": 1.7},
                "train:elsewhere": {"steps": 1, "trained_tokens": 10, "seconds": 1.0}}
    lines = cost.beside_measured(plan, manifest)
    assert len(lines) == 2
    sub = next(line for line in lines if line.startswith("train:sub_0"))
    tensors = est["memory"]["total_bytes"] - est["memory"]["parts"]["overhead"]
    assert "1,000 trained tokens/s" in sub and "peak GPU memory 1.7 GiB" in sub
    assert f"estimate {cost.fmt_gib(tensors)} in tensors" in sub and "vs 9.1 s" in sub
    assert "estimate" not in next(line for line in lines if "elsewhere" in line)


def test_gpu_check_prints_the_estimate_beside_the_measurement():
    from pathlib import Path

    script = (Path(__file__).parents[2] / "scripts" / "gpu_check.sh").read_text()
    assert "beside_measured(plan, jobs)" in script and "make_plan(load_config(" in script


def test_dtm_run_dry_run_takes_a_measured_throughput(tiny_dir, tmp_path, capsys):
    import yaml

    from dtmerge.cli.main import main

    data = write_alpaca(tmp_path / "d.jsonl", 20)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t", "runs_dir": str(tmp_path / "runs"), "model": {"path": str(tiny_dir)},
        "data": {"path": str(data)}, "eval": {"tasks": []},
        "train": {"lora": {"r": 4, "alpha": 8, "target_modules": "mlp"}}}))
    assert main(["run", str(path), "--dry-run", "--throughput", "250"]) == 0
    out = capsys.readouterr().out
    assert "250 trained tokens/s (given)" in out and "memory per training job" in out

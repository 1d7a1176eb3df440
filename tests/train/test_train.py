import json
import math

import pytest
import torch

from dtmerge.config import config_from_dict
from dtmerge.errors import ConfigError, TrainingError
from dtmerge.rundir import RunDir
from dtmerge.recipes import resolve_recipes
from dtmerge.recipes.stages import train_stage, unique_jobs
from dtmerge.train import train_model
from dtmerge.train.targets import resolve_target_modules


def _records(n):
    return [{"prompt": [{"role": "user", "content": f"where is alice born {i}"}],
             "completion": [{"role": "assistant", "content": "alice is born in paris"}],
             "source": "geo"} for i in range(n)]


def _cfg(tmp_path, model_dir, **train):
    train = {"method": "lora", "max_steps": 3, "batch_size": 2, "grad_accum": 1,
             "warmup_steps": 0, "learning_rate": 1e-3, "max_length": 256, "save_steps": 2,
             "logging_steps": 1, **train}
    return config_from_dict({
        "name": "t", "runs_dir": str(tmp_path / "runs"),
        "model": {"path": str(model_dir)}, "data": {"path": "unused.jsonl"},
        "disperse": {"num_portions": 2}, "train": train,
    })


def _write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_lora_job_saves_adapter_with_tokenizer_and_template(tmp_path, tiny_model_dir):
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path, tiny_model_dir)
    data = _write(tmp_path / "p.jsonl", _records(8))
    out = tmp_path / "models" / "sub_0"
    info = train_model(cfg, data, out, "sub_0", fingerprint="x")
    assert info["steps"] == 3 and math.isfinite(info["train_loss"])
    assert (out / "adapter_config.json").exists()
    adapter = json.loads((out / "adapter_config.json").read_text())
    # The paper's default: LoRA on the MLP projections only.
    assert set(adapter["target_modules"]) == {"gate_proj", "up_proj", "down_proj"}
    assert adapter["r"] == 16 and adapter["lora_alpha"] == 16
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    chat = tok_cfg.get("chat_template") or (out / "chat_template.jinja").read_text()
    assert "### Response:" in chat
    assert not (tmp_path / "models" / ".work" / "sub_0").exists()


def test_full_job_changes_weights(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    cfg = _cfg(tmp_path, tiny_model_dir, method="full")
    data = _write(tmp_path / "p.jsonl", _records(8))
    out = tmp_path / "models" / "sft"
    train_model(cfg, data, out, "sft")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tuned = AutoModelForCausalLM.from_pretrained(out)
    diff = sum((a - b).abs().sum().item() for a, b in zip(base.parameters(), tuned.parameters()))
    assert diff > 0


def test_nan_loss_stops_with_model_and_step(tmp_path, tiny_model_dir):
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path, tiny_model_dir, method="full", learning_rate=1e30, max_grad_norm=0.0,
               max_steps=6)
    data = _write(tmp_path / "p.jsonl", _records(8))
    with pytest.raises(TrainingError, match=r"sub_1: training diverged \((loss|grad_norm) = .*\) at step \d+"):
        train_model(cfg, data, tmp_path / "models" / "sub_1", "sub_1")
    assert not (tmp_path / "models" / "sub_1").exists()


def test_train_stage_skips_done_jobs_and_redoes_changed(tmp_path, tiny_model_dir):
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path, tiny_model_dir, max_steps=1)
    run = RunDir(cfg.run_dir)
    _write(run.all_data, _records(8))
    for k in range(2):
        _write(run.portion("dtm", k), _records(4))
    logs = []
    train_stage(cfg, run, log=logs.append)
    assert [j.name for j in unique_jobs(resolve_recipes(cfg), run)] == ["sub_0", "sub_1", "sft"]
    assert all(run.job(f"train:{n}")["status"] == "done" for n in ("sub_0", "sub_1", "sft"))
    logs.clear()
    result = train_stage(cfg, run, log=logs.append)
    assert result["trained"] == [] and sum("[skip]" in m for m in logs) == 3
    _write(run.portion("dtm", 1), _records(6))  # changed data: only that job is redone
    logs.clear()
    result = train_stage(cfg, run, log=logs.append)
    assert result["trained"] == ["sub_1"] and any("[redo] train:sub_1" in m for m in logs)


def test_a_pool_starts_the_job_with_the_most_data_first(tmp_path, tiny_model_dir, monkeypatch):
    import dtmerge.train.stage as stage

    cfg = _cfg(tmp_path, tiny_model_dir, max_steps=1, parallel_jobs=2)
    run = RunDir(cfg.run_dir)
    _write(run.all_data, _records(8))
    for k in range(2):
        _write(run.portion("dtm", k), _records(4))
    started = []
    monkeypatch.setattr(stage, "run_jobs", lambda fn, calls, where, **_: started.extend(
        [where.kind] + [name for name, _ in calls]) or [])
    train_stage(cfg, run, log=lambda m: None)
    # the recipes list sub_0, sub_1, sft; sft trains on all the data, twice a portion's steps
    assert started == ["pool", "sft", "sub_0", "sub_1"]


def test_target_presets(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert resolve_target_modules(model, "attention") == ["k_proj", "o_proj", "q_proj", "v_proj"]
    with pytest.raises(ConfigError, match="not found among"):
        resolve_target_modules(model, ["nope"])
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_target_modules(model, "mlpp")


def _two_portion_run(tmp_path, tiny_model_dir, **train):
    cfg = _cfg(tmp_path, tiny_model_dir, max_steps=1, sft_baseline=False, **train)
    run = RunDir(cfg.run_dir)
    _write(run.portion("dtm", 0), _records(4))
    run.portion("dtm", 1).write_text("")  # a broken portion: this job fails, the other must not
    return cfg, run


@pytest.mark.slow
def test_process_pool_isolates_a_failing_job(tmp_path, tiny_model_dir):
    from dtmerge.errors import DtmError

    cfg, run = _two_portion_run(tmp_path, tiny_model_dir, parallel_jobs=2)
    with pytest.raises(DtmError, match=r"training failed for sub_1 .*no training examples"):
        train_stage(cfg, run, log=lambda m: None)
    assert run.job("train:sub_0")["status"] == "done" and (run.model("sub_0") / "adapter_config.json").exists()
    assert run.job("train:sub_1")["status"] == "failed" and not run.model("sub_1").exists()


@pytest.mark.slow
def test_ray_executor_runs_jobs_as_tasks(tmp_path, tiny_model_dir):
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'dtmerge[ray]')")
    import ray
    from dtmerge.errors import DtmError

    cfg, run = _two_portion_run(tmp_path, tiny_model_dir, executor="ray")
    ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        with pytest.raises(DtmError, match=r"training failed for sub_1"):
            train_stage(cfg, run, log=lambda m: None)
    finally:
        ray.shutdown()
    assert run.job("train:sub_0")["status"] == "done" and run.model("sub_0").exists()


@pytest.mark.slow
def test_mlflow_streams_training_curves_live(tmp_path, tiny_model_dir, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="MLflow is an optional extra")
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path, tiny_model_dir, method="full")
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"mlflow": True})})
    data = _write(tmp_path / "p.jsonl", _records(8))
    train_model(cfg, data, tmp_path / "models" / "sub_0", "sub_0")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{(cfg.run_dir / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("t")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_name for r in runs] == ["sub_0"]
    assert len(client.get_metric_history(runs[0].info.run_id, "loss")) == 3

"""GPU habits, with torch.cuda mocked (these machines have no GPU): a training job sees
exactly the device it was given and the Trainer uses one device (never DataParallel), and a
CUDA out-of-memory error becomes a TrainingError that names the job, its batch size and
length, and what to lower."""

import json
import os

import pytest
import torch

from dtmerge.executors import devices
from dtmerge.config import config_from_dict
from dtmerge.errors import TrainingError
from dtmerge.executors import pin_job_device


def _cfg(tmp_path, model_dir, **train):
    train = {"method": "lora", "max_steps": 2, "batch_size": 4, "grad_accum": 2,
             "warmup_steps": 0, "max_length": 128, "save_steps": 100, "logging_steps": 1, **train}
    return config_from_dict({"name": "g", "runs_dir": str(tmp_path / "runs"),
                             "model": {"path": str(model_dir)}, "data": {"path": "unused.jsonl"},
                             "train": train})


@pytest.fixture
def four_gpus(monkeypatch):
    """CUDA as a process with four GPUs sees it: device_count follows CUDA_VISIBLE_DEVICES."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(devices, "gpu_driver_present", lambda: True)

    def count():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return 4 if visible is None else len([d for d in visible.split(",") if d.strip()])

    monkeypatch.setattr(torch.cuda, "device_count", count)
    return count


@pytest.mark.parametrize("given, env, pinned", [
    ("2", None, "2"),          # train.devices: the job's own slot
    (None, None, "0"),         # nothing set: one device, not all four
    (None, "1,3", "1"),        # a reservation of several (Ray's gpus_per_job=2): the first
    (None, "5", "5"),          # a reservation of one: kept
])
def test_a_job_sees_exactly_one_device(four_gpus, monkeypatch, given, env, pinned):
    if env is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    assert pin_job_device(given) == pinned
    assert os.environ["CUDA_VISIBLE_DEVICES"] == pinned and four_gpus() == 1


def test_no_gpu_or_hidden_cuda_is_left_alone(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(devices, "gpu_driver_present", lambda: False)
    assert pin_job_device(None) is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert pin_job_device(None) is None and os.environ["CUDA_VISIBLE_DEVICES"] == "-1"


def test_train_job_runs_on_the_device_it_was_given_with_n_gpu_1(four_gpus, monkeypatch,
                                                                 tmp_path, tiny_model_dir):
    from dtmerge.train import job as job_module
    from dtmerge.train import trainer

    seen = {}

    def fake_train_model(cfg, data, out, name, **kwargs):
        seen["visible"] = os.environ["CUDA_VISIBLE_DEVICES"]
        seen["devices"] = torch.cuda.device_count()
        seen["n_gpu"] = trainer.one_device(trainer.sft_config(cfg, tmp_path / "w", []), name).n_gpu
        return {}

    monkeypatch.setattr(trainer, "train_model", fake_train_model)
    cfg = _cfg(tmp_path, tiny_model_dir)
    job = job_module.TrainJob("sub_1", tmp_path / "p.jsonl", tmp_path / "out")
    job_module.run_train_job(cfg.model_dump(mode="json"), str(tmp_path / "runs" / "g"), job, "f", "3")
    assert seen == {"visible": "3", "devices": 1, "n_gpu": 1}


def test_trainer_never_runs_data_parallel_over_visible_gpus(four_gpus, monkeypatch, tmp_path,
                                                            tiny_model_dir, capsys):
    from dtmerge.train.trainer import one_device, sft_config

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # CUDA started before pinning
    args = sft_config(_cfg(tmp_path, tiny_model_dir), tmp_path / "w", [])
    assert args.n_gpu == 4  # what transformers would wrap in DataParallel
    assert one_device(args, "sft").n_gpu == 1
    assert "4 GPUs visible" in capsys.readouterr().out


def test_out_of_memory_names_the_job_and_what_to_lower(tmp_path, tiny_model_dir, monkeypatch):
    from trl import SFTTrainer

    from dtmerge.train import train_model

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SFTTrainer, "training_step", oom)
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"q {i}"}],
                                        "completion": [{"role": "assistant", "content": "a"}]})
                            + "\n" for i in range(8)))
    cfg = _cfg(tmp_path, tiny_model_dir)
    with pytest.raises(TrainingError) as err:
        train_model(cfg, data, tmp_path / "models" / "sub_0", "sub_0", fingerprint="x")
    text = str(err.value)
    assert text.startswith("sub_0: CUDA ran out of memory")
    assert "train.batch_size=4" in text and "train.max_length=128" in text
    assert "train.batch_size=2 train.grad_accum=4 (the same effective batch of 8)" in text
    assert "train.max_length=64" in text and "model.gradient_checkpointing=true" in text
    assert isinstance(err.value.__cause__, torch.cuda.OutOfMemoryError)
    assert not (tmp_path / "models" / "sub_0").exists()  # no model saved from a failed job

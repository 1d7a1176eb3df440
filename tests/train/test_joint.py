"""Joint LoRA training: adapters trained over one shared base equal adapters trained alone."""

import json

import pytest
import torch
from transformers import TrainerCallback

from dtmerge.config import config_from_dict
from dtmerge.train import train_model
from dtmerge.train.job import TrainJob
from dtmerge.train.joint import base_loads, joint_fallback, release_shared_base, train_on_shared_base

TOLERANCE = 1e-5  # fp32


def _cfg(tmp_path, model_dir, **train):
    # LoRA dropout on (the default 0.05): the random masks must follow each job's own seed too
    train = {"method": "lora", "max_steps": 4, "batch_size": 2, "grad_accum": 2,
             "warmup_steps": 1, "learning_rate": 5e-3, "max_length": 128, "save_steps": 2,
             "logging_steps": 1, "joint": True, **train}
    return config_from_dict({
        "name": "t", "runs_dir": str(tmp_path / "runs"), "model": {"path": str(model_dir)},
        "data": {"path": "unused.jsonl"}, "disperse": {"num_portions": 3}, "train": train,
    })


def _portion(path, k, n=12):
    city = ["paris", "rome", "berlin"][k]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({
        "prompt": [{"role": "user", "content": f"where is {name} born {i}"}],
        "completion": [{"role": "assistant", "content": f"{name} is born in {city}"}],
    }) + "\n" for i, name in enumerate(["alice", "bob", "carol", "dave"] * (n // 4))))
    return path


def _jobs(tmp_path, root):
    # sub_2 has a recipe seed of its own (model soups train sub-models with different seeds)
    return [TrainJob(f"sub_{k}", _portion(tmp_path / "data" / f"p{k}.jsonl", k),
                     tmp_path / root / f"sub_{k}", {"seed": 7} if k == 2 else None)
            for k in range(3)]


def _adapter(out):
    from safetensors.torch import load_file

    return load_file(out / "adapter_model.safetensors")


def _max_abs_diff(a_dir, b_dir) -> float:
    a, b = _adapter(a_dir), _adapter(b_dir)
    assert a.keys() == b.keys() and a
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _train_alone(cfg, jobs):
    for job in jobs:
        train_model(cfg, job.data, job.out, job.name, fingerprint="fp", spec=job.spec)


class _KillAt(TrainerCallback):
    """Stops training abruptly (no cleanup, like a kill) once `step` optimizer steps are done."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed at step {self.step}")


@pytest.fixture(scope="module")
def alone(tmp_path_factory, tiny_model_dir):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("alone")
    jobs = _jobs(tmp, "alone")
    _train_alone(_cfg(tmp, tiny_model_dir), jobs)
    return {job.name: job.out for job in jobs}


def test_joint_adapters_equal_adapters_trained_alone(tmp_path, tiny_model_dir, alone):
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path, tiny_model_dir)
    release_shared_base()
    loads = base_loads()
    infos = [train_on_shared_base(cfg, job, "fp") for job in _jobs(tmp_path, "joint")]
    assert base_loads() == loads + 1  # the base was loaded once for the three adapters
    assert all(info["joint"] and info["steps"] == 4 for info in infos)
    for job in _jobs(tmp_path, "joint"):
        diff = _max_abs_diff(job.out, alone[job.name])
        print(f"{job.name}: joint vs alone max abs diff {diff:.3g}")
        assert diff <= TOLERANCE
        # the files every later stage reads, as a separate job writes them
        assert {p.name for p in alone[job.name].iterdir()} <= {p.name for p in job.out.iterdir()}
    # the adapters did learn, and differently from each other (the comparison means something)
    assert _max_abs_diff(tmp_path / "joint" / "sub_0", tmp_path / "joint" / "sub_1") > 1e-3
    # the shared base came back clean: no LoRA layer left on it
    from dtmerge.train.joint import shared_base
    assert not [n for n, _ in shared_base(cfg).named_modules() if "lora" in n]


def test_joint_resumes_each_adapter_after_a_kill(tmp_path, tiny_model_dir, alone, capsys):
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path, tiny_model_dir)
    jobs = _jobs(tmp_path, "joint")
    train_on_shared_base(cfg, jobs[0], "fp")
    with pytest.raises(KeyboardInterrupt):
        train_on_shared_base(cfg, jobs[1], "fp", callbacks=[_KillAt(3)])
    assert not jobs[1].out.exists()  # never a half-written adapter
    # the rerun (a new process would start here): sub_1 from its step-2 checkpoint, then sub_2
    release_shared_base()
    for job in jobs[1:]:
        train_on_shared_base(cfg, job, "fp")
    assert "[resume] sub_1 from step 2" in capsys.readouterr().out
    for job in jobs:
        diff = _max_abs_diff(job.out, alone[job.name])
        print(f"{job.name} (after kill and resume): joint vs alone max abs diff {diff:.3g}")
        assert diff <= TOLERANCE


def test_full_fine_tuning_and_loss_changing_recipes_fall_back(tmp_path, tiny_model_dir):
    lora = _cfg(tmp_path, tiny_model_dir)
    full = _cfg(tmp_path, tiny_model_dir, method="full")
    job = TrainJob("sub_0", tmp_path / "p.jsonl", tmp_path / "out")
    assert joint_fallback(lora, job) is None
    assert joint_fallback(lora, TrainJob("s", job.data, job.out, {"seed": 3})) is None
    assert "full" in joint_fallback(full, job)
    for recipe in ({"penalty": {"kind": "l2"}}, {"replay": "r.jsonl"}):
        reason = joint_fallback(lora, TrainJob("x", job.data, job.out, recipe))
        assert reason and next(iter(recipe)) in reason


def test_train_stage_trains_the_dtm_sub_models_jointly(tmp_path, tiny_model_dir):
    from dtmerge.recipes.stages import train_stage
    from dtmerge.rundir import RunDir

    torch.set_num_threads(1)
    cfg = _cfg(tmp_path, tiny_model_dir, max_steps=2, parallel_jobs=2)
    cfg = cfg.model_copy(update={"disperse": cfg.disperse.model_copy(update={"num_portions": 2})})
    run = RunDir(cfg.run_dir)
    _portion(run.all_data, 0)
    for k in range(2):
        _portion(run.portion("dtm", k), k)
    logs = []
    release_shared_base()  # an earlier test's base (same model) would be reused, not loaded
    loads = base_loads()
    result = train_stage(cfg, run, log=logs.append)
    assert result["trained"] == ["sub_0", "sub_1", "sft"]
    assert any("joint" in m and "parallel_jobs 2 ignored" in m for m in logs)
    assert base_loads() == loads + 1  # one base for the three jobs, released after the stage
    for name in ("sub_0", "sub_1", "sft"):
        record = run.job(f"train:{name}")
        assert record["status"] == "done" and record["joint"] is True and record["steps"] == 2
        assert (run.model(name) / "adapter_config.json").exists()
    # the same adapter as a separate job on the same portion
    alone = tmp_path / "alone" / "sub_1"
    train_model(cfg, run.portion("dtm", 1), alone, "sub_1", fingerprint="fp")
    diff = _max_abs_diff(run.model("sub_1"), alone)
    print(f"stage sub_1: joint vs alone max abs diff {diff:.3g}")
    assert diff <= TOLERANCE
    # joint changes how jobs run, not what they learn: turning it off redoes nothing
    off = cfg.model_copy(update={"train": cfg.train.model_copy(update={"joint": False})})
    assert train_stage(off, run, log=logs.append)["trained"] == []


def test_train_stage_with_full_fine_tuning_says_joint_does_not_apply(tmp_path, tiny_model_dir):
    from dtmerge.train.joint import joint_applies

    logs = []
    assert not joint_applies(_cfg(tmp_path, tiny_model_dir, method="full"), logs.append)
    assert "train.joint ignored" in logs[0] and "full" in logs[0]
    assert not joint_applies(_cfg(tmp_path, tiny_model_dir, joint=False), logs.append)


_KILLED_RUN = """
import json, os, signal, sys
from pathlib import Path
from transformers import TrainerCallback
from dtmerge.config import config_from_dict
from dtmerge.train.job import TrainJob
from dtmerge.train.joint import train_on_shared_base

class SigkillAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup runs, as with a power cut

spec = json.loads(Path(sys.argv[1]).read_text())
cfg = config_from_dict(spec["config"])
jobs = [TrainJob(j["name"], Path(j["data"]), Path(j["out"]), j["spec"]) for j in spec["jobs"]]
train_on_shared_base(cfg, jobs[0], "fp")
train_on_shared_base(cfg, jobs[1], "fp", callbacks=[SigkillAt()])
"""


@pytest.mark.slow
def test_joint_resumes_after_a_real_sigkill(tmp_path, tiny_model_dir, alone, capsys):
    import signal
    import subprocess
    import sys

    cfg = _cfg(tmp_path, tiny_model_dir)
    jobs = _jobs(tmp_path, "joint")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"config": cfg.model_dump(mode="json"), "jobs": [
        {"name": j.name, "data": str(j.data), "out": str(j.out), "spec": j.spec} for j in jobs]}))
    script = tmp_path / "killed.py"
    script.write_text(_KILLED_RUN)
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(spec)], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert jobs[0].out.exists() and not jobs[1].out.exists()
    release_shared_base()
    for job in jobs[1:]:
        train_on_shared_base(cfg, job, "fp")
    assert "[resume] sub_1 from step 2" in capsys.readouterr().out  # not trained from scratch
    for job in jobs:
        diff = _max_abs_diff(job.out, alone[job.name])
        print(f"{job.name} (after SIGKILL and rerun): joint vs alone max abs diff {diff:.3g}")
        assert diff <= TOLERANCE

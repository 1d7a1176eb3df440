"""The Ray executor on a real cluster of separate processes: a head node and a worker node
started with `ray start` on the loopback address (every node binds 127.0.0.1), as on two machines.

Both nodes offer one CPU, so two one-CPU jobs can only run at once by using both nodes. The
cluster processes are started with `--block` in a process group of their own and stopped by
signalling that group (never `ray stop`, which would stop every Ray process of this user).
Token authentication uses the session's token from conftest.py, inherited by every process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dtmerge.config import config_from_dict
from dtmerge.rundir import RunDir

ray = pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[2] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(args: list[str], tmp: Path, name: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
               RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    ray_cli = Path(sys.executable).with_name("ray")
    log = open(tmp / f"{name}.log", "w")
    return subprocess.Popen([str(ray_cli), "start", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_line(log: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while text not in log.read_text():
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"ray start did not come up:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)


def _wait_for_nodes(address: str, n: int, timeout: float = 120) -> None:
    ray.init(address=address, log_to_driver=False)
    deadline = time.time() + timeout
    while sum(node["Alive"] for node in ray.nodes()) < n:
        if time.time() > deadline:
            raise TimeoutError(f"Ray cluster at {address} has not {n} nodes after {timeout}s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray-cluster")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    procs = [_ray_start(["--head", f"--port={port}", "--include-dashboard=false"], tmp, "head")]
    _wait_for_line(tmp / "head.log", "Ray runtime started", procs[0])
    procs.append(_ray_start([f"--address={address}"], tmp, "worker"))
    try:
        _wait_for_nodes(address, 2)
        yield address
    finally:
        ray.shutdown()
        for proc in reversed(procs):  # worker first, then the head
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                # The worker node's `ray start --block` outlived 30 s of SIGTERM here (the whole
                # wait, every run); its group holds only this cluster's processes: kill it sooner.
                proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)


def _records(n):
    return [{"prompt": [{"role": "user", "content": f"where is alice born {i}"}],
             "completion": [{"role": "assistant", "content": "alice is born in paris"}]}
            for i in range(n)]


def _run(tmp_path, model_dir, address, **train):
    train = {"method": "lora", "batch_size": 2, "grad_accum": 1, "warmup_steps": 0,
             "learning_rate": 1e-3, "max_length": 128, "logging_steps": 1, "sft_baseline": False,
             "executor": "ray", "ray_address": address, "cpus_per_job": 1, **train}
    cfg = config_from_dict({"name": "r", "runs_dir": str(tmp_path / "runs"),
                            "model": {"path": str(model_dir)}, "data": {"path": "unused.jsonl"},
                            "disperse": {"num_portions": 2}, "train": train})
    run = RunDir(cfg.run_dir)
    for k in range(2):
        run.portion("dtm", k).parent.mkdir(parents=True, exist_ok=True)
        run.portion("dtm", k).write_text("".join(json.dumps(r) + "\n" for r in _records(6)))
    return cfg, run


def test_two_jobs_run_on_both_nodes_and_ship_adapters_back(cluster, tmp_path, tiny_model_dir):
    from dtmerge.recipes.stages import train_stage

    # shared_storage=false: the portions go out and the adapters come back through Ray.
    cfg, run = _run(tmp_path, tiny_model_dir, cluster, max_steps=2, save_steps=1,
                    shared_storage=False)
    result = train_stage(cfg, run, log=print)
    assert result["trained"] == ["sub_0", "sub_1"]
    jobs = [run.job(f"train:sub_{k}") for k in range(2)]
    assert all(j["status"] == "done" and j["steps"] == 2 for j in jobs)
    assert len({j["node"] for j in jobs}) == 2, "one-CPU nodes: the two jobs must use both"
    assert all(j["shipped_bytes"] > 0 and "files" not in j for j in jobs)
    for k in range(2):
        out = run.model(f"sub_{k}")
        assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
        assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
    assert not (run.root / ".dtmerge-storage-probe").exists()


def _kill_when_checkpointed(work: Path, min_step: int, killed: list, stop: threading.Event):
    """Kill the training process once a checkpoint at or after `min_step` is complete."""
    while not stop.is_set():
        done = [c for c in work.glob("checkpoint-*") if (c / "trainer_state.json").exists()
                and int(c.name.rsplit("-", 1)[1]) >= min_step]
        progress = work / "progress.json"
        if done and progress.exists():
            state = json.loads(progress.read_text())
            if state["step"] < state["max_steps"]:
                os.kill(state["pid"], signal.SIGKILL)
                killed.append(state)
                return
        time.sleep(0.02)


def test_killed_worker_is_retried_and_resumes_from_its_checkpoint(cluster, tmp_path, tiny_model_dir):
    from dtmerge.recipes.stages import train_stage

    cfg, run = _run(tmp_path, tiny_model_dir, cluster, max_steps=60, save_steps=4, max_retries=1)
    killed: list = []
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_when_checkpointed,
                               args=(run.models_dir / ".work" / "sub_0", 4, killed, stop))
    watcher.start()
    try:
        train_stage(cfg, run, log=print)
    finally:
        stop.set()
        watcher.join()
    assert killed, "the job finished before it could be killed: raise max_steps"
    job = run.job("train:sub_0")
    assert job["status"] == "done" and job["steps"] == 60
    assert job["pid"] != killed[0]["pid"], "the job must have been rerun in a new worker"
    assert job["resumed_from_step"] >= 4, "the rerun must resume from the saved checkpoint"
    state = json.loads((run.model("sub_0") / "trainer_state.json").read_text())
    assert state["global_step"] == 60
    # Nothing lost: one loss per step in the log history, before and after the kill.
    steps = sorted({h["step"] for h in state["log_history"] if "loss" in h})
    assert steps == list(range(1, 61)) and run.job("train:sub_1")["status"] == "done"


def test_full_fine_tune_fails_fast_when_a_node_cannot_see_the_run_dir(cluster, tmp_path, tiny_model_dir):
    from dtmerge.errors import ConfigError
    from dtmerge.recipes.stages import train_stage
    from dtmerge.train.ray_executor import PROBE_FILE, SharedStorageError, _check_nodes_see_run_dir

    cfg, run = _run(tmp_path, tiny_model_dir, cluster, method="full", shared_storage=False)
    with pytest.raises(ConfigError, match="full fine-tunes .* need a shared run directory"):
        train_stage(cfg, run, log=print)
    assert run.job("train:sub_0") is None  # nothing started
    # The per-node probe: a token no node can find stands for a run dir they cannot see.
    with pytest.raises(SharedStorageError, match=r"needs the run directory .* node\(s\) \w+, \w+ cannot"):
        _check_nodes_see_run_dir(ray, str(run.root), "not-the-token")
    (run.root / PROBE_FILE).write_text("the-token")
    _check_nodes_see_run_dir(ray, str(run.root), "the-token")  # every node sees it: no error


def test_ray_workers_preload_the_job_modules_with_their_objects_frozen(cluster):
    """Like the pool's fork server: a Ray worker imports the job modules on its first task
    with the collector paused, then freezes them out of it (full collections in later jobs
    skip them), and leaves the collector on."""
    from dtmerge.executors import Placement, run_jobs

    def warm_state(x, slot):  # defined here: Ray ships it by value
        import gc
        import sys

        return gc.get_freeze_count(), gc.isenabled(), "trl.trainer.sft_trainer" in sys.modules

    done = {}
    failures = run_jobs(warm_state, [("a", (1,)), ("b", (2,))],
                        Placement("ray", ray_address=cluster, ray_options={"num_cpus": 1},
                                  threads=1),
                        on_start=lambda n: None, on_done=done.__setitem__,
                        on_fail=lambda n, e: None)
    assert failures == []
    for frozen, collecting, preloaded in done.values():
        assert frozen > 100_000 and collecting and preloaded

"""Placement of jobs: thread counts and the local/pool executors' bookkeeping."""

import os
from pathlib import Path

import pytest

from dtmerge.executors import (SMALL_MODEL_BYTES, Placement, longest_first, parallel_jobs,
                               pool_expected, run_jobs, threads_per_job)


def test_threads_follow_the_cores_a_job_was_given(monkeypatch):
    monkeypatch.setattr("dtmerge.executors.sizing.usable_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_per_job(None, 1) == 8
    assert threads_per_job(None, 4) == 2  # four jobs side by side share the cores
    assert threads_per_job(None, 16) == 1
    assert threads_per_job(None, 1, cpus=2.5) == 2  # a Ray task: its reserved CPUs
    assert threads_per_job(3, 4) == 3  # asked explicitly
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads_per_job(None, 1) == 2  # the user's OMP_NUM_THREADS caps it


def test_auto_parallel_jobs_runs_small_cpu_models_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setattr("dtmerge.executors.sizing.usable_cores", lambda: 2)
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir(), large.mkdir()
    (small / "model.safetensors").write_bytes(b"0" * 1000)
    with open(large / "model-00001.safetensors", "wb") as f:  # sparse: no real disk used
        f.truncate(SMALL_MODEL_BYTES + 1)
    assert parallel_jobs("auto", small, jobs=5, on_cpu=True) == 2  # one per core
    assert parallel_jobs("auto", small, jobs=1, on_cpu=True) == 1  # never more than the jobs
    assert parallel_jobs("auto", small, jobs=5, on_cpu=False) == 1  # a GPU: one at a time
    assert parallel_jobs("auto", large, jobs=5, on_cpu=True) == 1  # large: threads use the cores
    assert parallel_jobs("auto", "org/hub-model", jobs=5, on_cpu=True) == 1  # size unknown
    assert parallel_jobs(3, small, jobs=5, on_cpu=True) == 3  # a number is taken as given


def test_a_pool_is_expected_before_torch_is_imported(tmp_path, monkeypatch):
    """`dtm run` starts the pool's fork server early when a stage will pool its jobs."""
    monkeypatch.setattr("dtmerge.executors.sizing.usable_cores", lambda: 2)
    monkeypatch.setattr("dtmerge.executors.sizing.nvidia_visible", lambda: False)
    small = tmp_path / "small"
    small.mkdir()
    (small / "model.safetensors").write_bytes(b"0" * 1000)
    assert pool_expected(2, None, small) and not pool_expected(1, None, small)
    assert pool_expected(1, ["0", "1"], small)  # one job per listed device
    assert pool_expected("auto", None, small)
    assert not pool_expected("auto", None, tmp_path / "org-hub-model")  # size unknown
    monkeypatch.setattr("dtmerge.executors.sizing.nvidia_visible", lambda: True)
    assert not pool_expected("auto", None, small)  # "auto" on a GPU: one job at a time
    monkeypatch.setattr("dtmerge.executors.sizing.usable_cores", lambda: 1)
    monkeypatch.setattr("dtmerge.executors.sizing.nvidia_visible", lambda: False)
    assert not pool_expected("auto", None, small)


def _modules_loaded_at_start(x, slot):
    import sys

    return [m for m in ("trl.trainer.sft_trainer", "lm_eval.models.huggingface",
                        "dtmerge.train.trainer", "dtmerge.evaluate.harness") if m in sys.modules]


def test_pool_workers_start_with_the_job_modules_imported():
    """Workers fork from a server that imported what the jobs import, SFTTrainer and lm-eval's
    HF model included (lazy parts of their packages, which `import trl` does not load)."""
    done = {}
    failures = run_jobs(_modules_loaded_at_start, [("a", (1,)), ("b", (2,))],
                        Placement("pool", slots=(None, None), threads=1), on_start=lambda n: None,
                        on_done=done.__setitem__, on_fail=lambda n, e: None)
    assert failures == [] and len(done["a"]) == 4 and done["a"] == done["b"]


def _frozen_objects(x, slot):
    import gc

    return gc.get_freeze_count(), gc.isenabled()


def test_pool_workers_inherit_the_servers_objects_frozen_out_of_the_collector():
    """A full collection in a worker (one per training job, from accelerate) must not walk the
    ~500k objects of the preloaded libraries; and the collector, off during the server's
    preload, is on in the workers."""
    done = {}
    failures = run_jobs(_frozen_objects, [("a", (1,)), ("b", (2,))],
                        Placement("pool", slots=(None, None), threads=1), on_start=lambda n: None,
                        on_done=done.__setitem__, on_fail=lambda n, e: None)
    assert failures == []
    for frozen, collecting in done.values():
        assert frozen > 100_000 and collecting


_IN_PROCESS_JOB = """
import gc, sys
from dtmerge import executors
if sys.argv[1] == "claimed":
    executors.claim_process()  # as the dtm command does first
done = {}
executors.run_jobs(lambda x, slot: (gc.get_freeze_count(), gc.isenabled()), [("a", (1,))],
                   executors.Placement(), on_start=lambda n: None, on_done=done.__setitem__,
                   on_fail=lambda n, e: None)
print(*done["a"])
"""


@pytest.mark.parametrize("process", ["claimed", "callers"])
def test_in_process_jobs_tune_the_collector_only_in_dtms_own_process(process):
    """In `dtm`'s own process the first in-process job runs after the job modules were loaded
    with the collector paused and frozen out of its view (a sequential run spent ~3 s in 12
    full collections over them); a caller's process (a notebook) keeps its collector as is."""
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[2] / "src")
    done = subprocess.run([sys.executable, "-c", _IN_PROCESS_JOB, process], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=src), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    frozen, collecting = done.stdout.split()
    assert collecting == "True"
    assert int(frozen) > 100_000 if process == "claimed" else int(frozen) == 0


def test_the_pool_preload_survives_a_library_that_fails_to_import(tmp_path, monkeypatch):
    """A broken optional library must not take the fork server (and every job) down with it."""
    import sys

    from dtmerge.executors import warmup

    (tmp_path / "broken_lib.py").write_text("raise RuntimeError('wrong CUDA runtime')\n")
    (tmp_path / "fine_lib.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(warmup, "JOB_MODULES", ["broken_lib", "fine_lib"])
    warmup.preload_job_modules()
    assert "fine_lib" in sys.modules and "broken_lib" not in sys.modules


def _warnings_shown(x, slot):
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.warn("a library's old api", FutureWarning)  # from this (non-dtmerge) module
        warnings.warn_explicit("dtmerge's own notice", FutureWarning, "dtmerge/x.py", 1,
                               module="dtmerge.x")
        warnings.warn("check your data", UserWarning)
    return sorted(str(w.message) for w in seen)


def test_pool_workers_drop_library_deprecations_like_the_cli(monkeypatch):
    monkeypatch.delenv("DTMERGE_LIBRARY_DEPRECATIONS", raising=False)
    done = {}
    failures = run_jobs(_warnings_shown, [("a", (1,)), ("b", (2,))],
                        Placement("pool", slots=(None, None), threads=1), on_start=lambda n: None,
                        on_done=done.__setitem__, on_fail=lambda n, e: None)
    assert failures == []
    assert done["a"] == done["b"] == ["check your data", "dtmerge's own notice"]


def _threads_seen(x, slot):
    import torch

    return {"x": x, "threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")}


def test_local_jobs_run_with_their_threads_and_restore_the_caller(monkeypatch):
    import torch

    before = torch.get_num_threads()
    done, started = {}, []
    run_jobs(_threads_seen, [("a", (1,)), ("b", (2,))], Placement(threads=1),
             on_start=started.append, on_done=done.__setitem__, on_fail=lambda n, e: None)
    assert started == ["a", "b"] and done["a"]["threads"] == 1 and done["b"]["x"] == 2
    assert torch.get_num_threads() == before


def _fail_on_two(x, slot):
    if x == 2:
        raise ValueError("bad portion")
    return x


@pytest.mark.slow
def test_pool_keeps_going_past_a_failed_job():
    done, failed = {}, {}
    failures = run_jobs(_fail_on_two, [("a", (1,)), ("b", (2,)), ("c", (3,))],
                        Placement("pool", slots=(None, None), threads=1),
                        on_start=lambda n: None, on_done=done.__setitem__,
                        on_fail=failed.__setitem__)
    assert done == {"a": 1, "c": 3} and failures == ["b (ValueError: bad portion)"]
    assert failed == {"b": "ValueError: bad portion"}


def test_longest_first_orders_by_cost_and_keeps_ties_in_their_order():
    jobs = [("sub_0", (1,)), ("replay", (2,)), ("sft", (3,)), ("ewc", (4,)), ("sub_1", (5,))]
    cost = {"sub_0": 1, "replay": 8, "sft": 4, "ewc": 4, "sub_1": 1}
    assert [name for name, _ in longest_first(jobs, cost.__getitem__)] == \
        ["replay", "sft", "ewc", "sub_0", "sub_1"]


def test_local_jobs_leave_the_callers_environment_as_it_was(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    done = {}
    run_jobs(_threads_seen, [("a", (1,))], Placement(threads=2), on_start=lambda n: None,
             on_done=done.__setitem__, on_fail=lambda n, e: None)
    assert done["a"]["omp"] == "2" and done["a"]["threads"] == 2
    assert os.environ["OMP_NUM_THREADS"] == "1" and "OMP_WAIT_POLICY" not in os.environ


def test_ray_tasks_carry_an_environment_only_for_several_threads():
    from dtmerge.executors import ray_task_options

    one = ray_task_options(Placement("ray", ray_options={"num_cpus": 1, "max_retries": 2},
                                     threads=1))
    assert one == {"num_cpus": 1, "max_retries": 2}  # runs in Ray's prestarted workers
    four = ray_task_options(Placement("ray", ray_options={"num_cpus": 4}, threads=4))
    assert four["runtime_env"]["env_vars"] == {"OMP_NUM_THREADS": "4",
                                               "OMP_WAIT_POLICY": "PASSIVE"}


def test_a_run_starts_the_pool_server_early_only_when_a_stage_pools(tmp_path, monkeypatch):
    from dtmerge import pipeline
    from dtmerge.config import config_from_dict

    started = []
    monkeypatch.setattr("dtmerge.executors.start_pool_server", lambda: started.append(1))

    def starts(train, evaluate, stages=("train", "eval")):
        started.clear()
        cfg = config_from_dict({"name": "t", "runs_dir": str(tmp_path), "model": {"path": "org/m"},
                                "data": {"path": "d.jsonl"}, "train": train, "eval": evaluate})
        pipeline._start_pool_early(cfg, list(stages))
        return bool(started)

    one = {"parallel_jobs": 1}
    assert starts({"parallel_jobs": 2}, one) and starts(one, {"parallel_jobs": 2})
    assert not starts(one, one)
    assert not starts({"parallel_jobs": 2}, one, stages=("eval",))  # train is not run
    assert not starts({"parallel_jobs": 2, "executor": "ray"}, one)  # Ray places them
    assert not starts({"parallel_jobs": "auto"}, one)  # a Hub id: size unknown, no pool

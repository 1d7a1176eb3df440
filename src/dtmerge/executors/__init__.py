"""Where independent jobs run: in this process, in a pool of spawned processes, or on Ray.

Training jobs (the K sub-models and SFT) and evaluation jobs (one per variant) are independent,
so each stage hands a list of named calls to `run_jobs` and gets every result back in this
(driver) process, which alone writes the manifest. The job body is the same function in all
three places, called with plain, picklable arguments plus a device slot.

- local: one after another here; the first failure is raised as it is (a user error keeps
  its one-line message).
- pool: at most one job per slot at a time in spawned processes (`slots` are device ids, or
  None on CPU); a job's crash never touches the others.
- ray: one Ray task per job with its own CPU/GPU reservation; a task whose worker or node dies
  is rerun up to `max_retries` times (errors raised by the job itself are not retried: they
  would fail again). Ray sets CUDA_VISIBLE_DEVICES itself, so the slot is None.

One concern per module: `base` (a job, its placement), `sizing` (jobs at once, threads per
job), `devices` (the one CUDA device a job sees), `threads` (setting them in the job's
process), `warmup` (preloads and collector settings of processes dtmerge owns), `pool`, `ray`
and `run` (`run_jobs`). The names other packages use are imported here.
"""

from dtmerge.executors.base import Job, Placement, describe_error, longest_first
from dtmerge.executors.devices import gpu_driver_present, pin_job_device
from dtmerge.executors.pool import start_pool_server
from dtmerge.executors.ray import connect_ray, ray_task_options
from dtmerge.executors.run import run_jobs
from dtmerge.executors.sizing import (SMALL_MODEL_BYTES, model_weight_bytes, parallel_jobs,
                                      pool_expected, threads_per_job, usable_cores)
from dtmerge.executors.threads import call_with_threads, set_threads
from dtmerge.executors.warmup import (JOB_MODULES, claim_process, preload_job_modules,
                                      warm_up_worker)

__all__ = ["JOB_MODULES", "SMALL_MODEL_BYTES", "Job", "Placement", "call_with_threads",
           "claim_process", "connect_ray", "describe_error", "gpu_driver_present", "longest_first",
           "model_weight_bytes", "parallel_jobs", "pin_job_device", "pool_expected",
           "preload_job_modules", "ray_task_options", "run_jobs", "set_threads",
           "start_pool_server", "threads_per_job", "usable_cores", "warm_up_worker"]

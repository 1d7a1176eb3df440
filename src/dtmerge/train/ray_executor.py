"""Train jobs as Ray tasks: the K sub-models are independent, so a cluster runs them at once.

`train.ray_address` joins an existing cluster (default: start a local one). Every node must
see the run directory at the same path (a shared filesystem); the manifest is still written
by this driver process only. Ray is an optional extra: `pip install dtmerge[ray]`.
"""

from __future__ import annotations

from dtmerge.errors import DtmError
from dtmerge.rundir import RunDir


def run_on_ray(cfg_json: dict, run: RunDir, todo, log) -> list[str]:
    try:
        import ray
    except ImportError:
        raise DtmError("train.executor: ray needs Ray: pip install 'dtmerge[ray]'") from None
    from dtmerge.train.job import run_train_job

    train = cfg_json["train"]
    if not ray.is_initialized():
        ray.init(address=train.get("ray_address"), include_dashboard=False,
                 log_to_driver=True, ignore_reinit_error=True)
    remote = ray.remote(num_gpus=train["gpus_per_job"], num_cpus=train["cpus_per_job"],
                        max_retries=0)(run_train_job)
    refs = {}
    for job, fp in todo:
        log(f"[train] {job.name} as a Ray task")
        run.mark_started(f"train:{job.name}", fp, {"data": str(job.data)})
        # Ray assigns GPUs itself (CUDA_VISIBLE_DEVICES per task): no device slot here.
        refs[remote.remote(cfg_json, str(run.root.resolve()), job, fp, None)] = job
    failures = []
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        job = refs[done[0]]
        try:
            run.mark_done(f"train:{job.name}", **ray.get(done[0]))
        except Exception as err:  # one task's crash must not stop the others
            cause = getattr(err, "cause", None) or err
            run.mark_failed(f"train:{job.name}", f"{type(cause).__name__}: {cause}")
            failures.append(f"{job.name} ({type(cause).__name__}: {cause})")
    return failures

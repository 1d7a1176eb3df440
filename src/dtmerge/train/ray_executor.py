"""Train jobs as Ray tasks: the K sub-models are independent, so a cluster runs them at once.

`train.ray_address` joins an existing cluster (default: start a local one). A task whose
worker or node dies is rerun (`train.max_retries`) and resumes from its last checkpoint when
it can see the run directory.

Storage (`train.shared_storage`):
- Shared (a filesystem every node mounts at the same path): tasks read their portion and
  write checkpoints and the model into the run directory themselves.
- Not shared: a LoRA job receives its portion through Ray's object store, trains in a local
  directory of its node, and sends the adapter, tokenizer, trainer state and metrics back as
  bytes; this driver writes them into the run directory atomically. Full fine-tunes (whole
  models, GBs) need shared storage and fail before any training if a node cannot see it.
- Unset (default): each task checks for a token file the driver wrote into the run directory.
The manifest is written by this driver process only. Ray is an extra: `pip install dtmerge[ray]`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from dtmerge.errors import ConfigError, DtmError
from dtmerge.executors import Placement, connect_ray
from dtmerge.rundir import RunDir, atomic_dir, atomic_write_text, hash_obj
from dtmerge.train.job import TrainJob, run_train_job

PROBE_FILE = ".dtmerge-storage-probe"


class SharedStorageError(DtmError):
    """A worker cannot see the run directory and the job cannot work without it."""


def sees_run_dir(run_root: str, token: str) -> bool:
    probe = Path(run_root) / PROBE_FILE
    try:
        return probe.read_text() == token
    except OSError:
        return False


def _node() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (e.g. a direct call in a test)
        return "local"


def pack_dir(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def unpack_dir(files: dict[str, bytes], final: Path) -> None:
    with atomic_dir(final) as tmp:
        for rel, data in files.items():
            target = tmp / rel
            if tmp.resolve() not in target.resolve().parents:
                raise DtmError(f"{final}: refusing to write {rel!r} outside the model directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def ray_train_job(cfg_json: dict, run_root: str, job: TrainJob, fingerprint: str, token: str | None,
                  portion_box: list, device):
    """The Ray task: train in place when the run dir is visible, else locally and ship back."""
    train = cfg_json["train"]
    if token is not None and sees_run_dir(run_root, token):
        return dict(run_train_job(cfg_json, run_root, job, fingerprint, None), node=_node())
    where = f"node {_node()} cannot see the run directory {run_root}"
    if train["shared_storage"] is True:
        raise SharedStorageError(f"{job.name}: {where} (train.shared_storage is true): mount it "
                                 "at the same path on every node, or unset train.shared_storage")
    if train["method"] != "lora" or cfg_json["monitor"]["enabled"]:
        raise SharedStorageError(f"{job.name}: {where}; full fine-tunes and monitor.enabled need "
                                 "it: mount the run directory at the same path on every node")
    import ray

    # A stable local directory per run and job, so a retry on this node resumes its checkpoint.
    local = Path(tempfile.gettempdir()) / "dtmerge-ray" / hash_obj([run_root, fingerprint]) / job.name
    data = local / "portion.jsonl"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(data, ray.get(portion_box[0]).decode())
    local_job = TrainJob(job.name, data, local / "models" / job.name)
    info = run_train_job(cfg_json, str(local), local_job, fingerprint, None)
    files = pack_dir(local_job.out)
    shutil.rmtree(local, ignore_errors=True)
    return dict(info, node=_node(), shipped_bytes=sum(map(len, files.values())), files=files)


def _check_nodes_see_run_dir(ray, run_root: str, token: str) -> None:
    """Fail fast: one tiny task pinned to every alive node looks for the probe file."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(sees_run_dir)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False))
            .remote(run_root, token) for n in nodes]
    blind = [n for n, ok in zip(nodes, ray.get(refs)) if not ok]
    if blind:
        raise SharedStorageError(
            f"train.method=full needs the run directory {run_root} on every node, but Ray "
            f"node(s) {', '.join(n[:12] for n in blind)} cannot see it: mount it at the same "
            "path on every node (LoRA jobs can run without shared storage)")


def plan_ray(cfg_json: dict, run: RunDir, todo: list) -> tuple[Placement, list]:
    """The placement and the task arguments of every job to train."""
    train = cfg_json["train"]
    shared = train["shared_storage"]
    if shared is False and (train["method"] != "lora" or cfg_json["monitor"]["enabled"]):
        raise ConfigError("train.shared_storage=false works for LoRA jobs without the monitor "
                          "only: full fine-tunes and monitor.enabled need a shared run directory")
    ray = connect_ray(train.get("ray_address"))
    run_root = str(run.root.resolve())
    token = None
    if shared is not False:
        token = uuid.uuid4().hex
        atomic_write_text(run.root / PROBE_FILE, token)
        if train["method"] != "lora":
            _check_nodes_see_run_dir(ray, run_root, token)
    jobs = []
    for job, fp in todo:
        box = [ray.put(Path(job.data).read_bytes())] if shared is not True else [None]
        jobs.append((job.name, (cfg_json, run_root, job, fp, token, box)))
    where = Placement("ray", ray_address=train.get("ray_address"), ray_options=dict(
        num_gpus=train["gpus_per_job"], num_cpus=train["cpus_per_job"],
        max_retries=train["max_retries"]))
    return where, jobs


def finish_ray_job(job: TrainJob, info: dict) -> dict:
    """Write shipped outputs into the run directory; the rest is the manifest record."""
    files = info.pop("files", None)
    if files is not None:
        unpack_dir(files, job.out)
    return info


def cleanup_probe(run: RunDir) -> None:
    if (run.root / PROBE_FILE).exists():
        os.remove(run.root / PROBE_FILE)

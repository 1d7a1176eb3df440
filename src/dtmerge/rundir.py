"""The run directory: the contract between stages.

Layout of `runs/NAME/`::

    config.yaml            resolved config of the latest invocation
    manifest.json          per stage/job: status, fingerprint, timings, outputs
    data/all.jsonl         normalised training data (train split)
    data/heldout.jsonl     held-out split (validation loss, bias monitor)
    data/portion_<k>.jsonl the K portions, data/summary.json
    models/sub_<k>/        sub-model k (LoRA adapter or full model)
    models/sft/            SFT baseline trained on all the data
    models/dtm/            merged model (standard Hugging Face directory)
    models/interp_<t>/     base + t * (sft - base), written by the merge stage
    eval/<variant>.json    evaluation results per variant
    report/report.md, report/report.html

Every output is written under a temporary name and renamed into place when complete, and a
job is only "done" when the manifest says so with a fingerprint equal to the one computed
from its current config and inputs. A killed job therefore never looks finished, and a job
whose config or inputs changed is redone (and the rerun says so).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

STAGES = ("data", "disperse", "train", "merge", "eval", "report")


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; rename it to `final` only if the block succeeds.

    An existing `final` is replaced only after the new one is complete.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def interp_name(t: float) -> str:
    """The variant name of base + t * (sft - base): `interp_0.5`."""
    return f"interp_{t:g}"


def hash_obj(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def hash_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def hash_path(path: Path) -> str:
    """Content hash of a file, or of a directory's files (names + sizes + mtimes for speed
    on large weights, full content for small files)."""
    path = Path(path)
    if path.is_file():
        return hash_file(path)
    entries = []
    for p in sorted(path.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            st = p.stat()
            rel = str(p.relative_to(path))
            if st.st_size < (4 << 20):
                entries.append((rel, hash_file(p)))
            else:
                entries.append((rel, st.st_size, int(st.st_mtime)))
    return hash_obj(entries)


class RunDir:
    """Paths and the manifest of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- paths
    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def all_data(self) -> Path:
        return self.data_dir / "all.jsonl"

    @property
    def heldout_data(self) -> Path:
        return self.data_dir / "heldout.jsonl"

    def portion(self, k: int) -> Path:
        return self.data_dir / f"portion_{k}.jsonl"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model(self, name: str) -> Path:
        return self.models_dir / name

    def eval_file(self, variant: str) -> Path:
        return self.root / "eval" / f"{variant}.json"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    # -- manifest
    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"jobs": {}}
        return json.loads(self.manifest_path.read_text())

    def job(self, name: str) -> dict[str, Any] | None:
        return self.read_manifest()["jobs"].get(name)

    def is_done(self, name: str, fingerprint: str) -> bool:
        job = self.job(name)
        return bool(job and job.get("status") == "done" and job.get("fingerprint") == fingerprint)

    def update_job(self, name: str, **fields: Any) -> None:
        manifest = self.read_manifest()
        job = manifest["jobs"].setdefault(name, {})
        job.update(fields)
        atomic_write_json(self.manifest_path, manifest)

    def mark_started(self, name: str, fingerprint: str, inputs: dict[str, str] | None = None):
        self.update_job(
            name, status="running", fingerprint=fingerprint, inputs=inputs or {},
            started=time.time(), finished=None, seconds=None,
        )

    def mark_done(self, name: str, **extra: Any) -> None:
        job = self.job(name) or {}
        now = time.time()
        self.update_job(
            name, status="done", finished=now,
            seconds=round(now - job.get("started", now), 2), **extra,
        )

    def mark_failed(self, name: str, error: str) -> None:
        self.update_job(name, status="failed", error=error, finished=time.time())


def run_job(run: RunDir, name: str, fingerprint: str, work, *, inputs: dict[str, str] | None = None,
            log=print) -> bool:
    """Run `work()` as manifest job `name` unless it is already done with this fingerprint.

    Returns True when the job ran. `work` may return a dict stored with the job record.
    A job whose previous fingerprint differs is redone, and the log says so.
    """
    if run.is_done(name, fingerprint):
        log(f"[skip] {name}: already done with the same config and inputs")
        return False
    previous = run.job(name)
    if previous and previous.get("status") == "done":
        log(f"[redo] {name}: its config or inputs changed since it was done; running it again")
    elif previous and previous.get("status") in ("running", "failed"):
        log(f"[resume] {name}: previous attempt did not finish ({previous.get('status')})")
    run.mark_started(name, fingerprint, inputs)
    try:
        extra = work() or {}
    except BaseException as err:
        run.mark_failed(name, f"{type(err).__name__}: {err}")
        raise
    run.mark_done(name, **extra)
    return True

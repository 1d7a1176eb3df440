"""The merge stage of a run, and the base-to-model interpolation the eval stage uses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dtmerge.errors import MergeError
from dtmerge.merge.engine import merge_models
from dtmerge.rundir import RunDir, hash_obj, hash_path, run_job

if TYPE_CHECKING:  # the pydantic schema costs ~0.3 s to import; `dtm merge --base` needs none
    from dtmerge.config import RunConfig


def interpolate(base: str | Path, model: str | Path, t: float, out_dir: str | Path) -> dict:
    """Write base + t * (model - base) to `out_dir` (the WiSE-FT line between base and model)."""
    return merge_models(base, [model], out_dir, method="linear", base_interpolation=t)


def merge_stage(cfg: "RunConfig", run: RunDir, log=print) -> dict:
    """Merge the run's K sub-models into `run.model("dtm")` with `cfg.merge`.

    Skipped when already done with the same merge config and the same sub-model files.
    Returns the merge record (or the manifest's job record when skipped).
    """
    from dtmerge.models import resolve_model_path

    base = resolve_model_path(cfg.model)
    k = cfg.disperse.num_portions
    subs = [run.model(f"sub_{i}") for i in range(k)]
    missing = [str(p) for p in subs if not p.exists()]
    if missing:
        raise MergeError(f"cannot merge: sub-model(s) {', '.join(missing)} not found; run "
                         "`dtm train` on this run directory first")
    fisher_data = [run.portion(i) for i in range(k)] if cfg.merge.method == "fisher" else None
    inputs = {f"sub_{i}": hash_path(p) for i, p in enumerate(subs)}
    if fisher_data:
        inputs.update({f"portion_{i}": hash_path(p) for i, p in enumerate(fisher_data)})
    fingerprint = hash_obj({"merge": cfg.merge.model_dump(mode="json"), "base": base,
                            "inputs": inputs})
    record: dict = {}

    def work() -> dict:
        record.update(merge_models(
            base, subs, run.model("dtm"), method=cfg.merge.method, weights=cfg.merge.weights,
            params=dict(cfg.merge.params), base_interpolation=cfg.merge.base_interpolation,
            shard_size=cfg.merge.shard_size, fisher_data=fisher_data, log=log))
        return {"outputs": [str(run.model("dtm"))], "method": record["method"]}

    run_job(run, "merge", fingerprint, work, inputs=inputs, log=log)
    return record or (run.job("merge") or {})

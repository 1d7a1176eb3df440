"""The merge stage of a run: the K sub-models into `dtm`, and the base-to-SFT interpolations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dtmerge.errors import ConfigError, MergeError
from dtmerge.merge.engine import merge_models
from dtmerge.merge.options import MergeOptions, data_for_merge
from dtmerge.rundir import OWN_DTM, RunDir, hash_model, hash_obj, hash_path, interp_name, run_job

if TYPE_CHECKING:  # the pydantic schema costs ~0.3 s to import; `dtm merge --base` needs none
    from dtmerge.config import RunConfig


def interpolate(base: str | Path, model: str | Path, t: float, out_dir: str | Path) -> dict:
    """Write base + t * (model - base) to `out_dir` (the WiSE-FT line between base and model)."""
    return merge_models(base, [model], out_dir, method="linear", base_interpolation=t)


def merge_stage(cfg: "RunConfig", run: RunDir, log=print) -> dict:
    """Merge the run's K sub-models into `run.model("dtm")` with `cfg.merge`.

    Skipped when already done with the same merge config and the same sub-model files. When
    `eval.variants` asks for the interpolation line, its points base + t*(sft - base) are
    written first (they need only the SFT model).
    Returns the merge record (or the manifest's job record when skipped).
    """
    from dtmerge.models import resolve_model_path

    if "interpolation" in cfg.eval.variants:
        build_interpolations(cfg, run, log)

    base = resolve_model_path(cfg.model)
    k = cfg.disperse.num_portions
    subs = [run.sub_model(OWN_DTM, i) for i in range(k)]
    missing = [str(p) for p in subs if not p.exists()]
    if missing:
        raise MergeError(f"cannot merge: sub-model(s) {', '.join(missing)} not found; run "
                         "`dtm train` on this run directory first")
    for i, sub in enumerate(subs):
        run.require_finished(f"train:{sub.name}", sub)
    fisher_data = data_for_merge(cfg.merge.method, [run.portion(OWN_DTM, i) for i in range(k)])
    inputs = {p.name: hash_path(p) for p in subs}
    if fisher_data:
        inputs.update({p.stem: hash_path(p) for p in fisher_data})
    # as_adapter is left out while off, so runs merged before the key existed stay done.
    settings = cfg.merge.model_dump(mode="json", exclude=set() if cfg.merge.as_adapter
                                    else {"as_adapter"})
    fingerprint = hash_obj({"merge": settings, "base": base, "inputs": inputs})
    record: dict = {}

    def work() -> dict:
        options = MergeOptions.from_config(cfg.merge, fisher_data=fisher_data)
        record.update(merge_models(base, subs, run.model("dtm"), options, log=log))
        return {"outputs": [str(run.model("dtm"))], "method": record["method"]}

    run_job(run, "merge", fingerprint, work, inputs=inputs, outputs=[run.model("dtm")], log=log)
    return record or (run.job("merge") or {})


def build_interpolations(cfg: "RunConfig", run: RunDir, log=print) -> list[Path]:
    """Write base + t*(sft - base) for every t in cfg.eval.interpolation (job `interp:<t>`)."""
    from dtmerge.models import resolve_model_path

    sft = run.model("sft")
    if not sft.exists():
        raise ConfigError("eval.variants has 'interpolation' but there is no SFT model "
                          f"({sft}); enable train.sft_baseline and train it first")
    run.require_finished("train:sft", sft)
    base = resolve_model_path(cfg.model)
    base_hash = hash_model(base)
    outs = []
    for t in cfg.eval.interpolation:
        out = run.model(interp_name(t))
        fp = hash_obj({"t": t, "base": base_hash, "sft": hash_path(sft)})
        run_job(run, f"interp:{t:g}", fp, lambda t=t, out=out: _interp(base, sft, t, out),
                outputs=[out], log=log)
        outs.append(out)
    return outs


def _interp(base: str, sft: Path, t: float, out: Path) -> dict:
    interpolate(base, sft, t, out)
    return {"outputs": [str(out)]}

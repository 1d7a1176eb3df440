"""The base-to-SFT interpolation line of a run (the dtm recipe merges its own sub-models)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dtmerge.errors import ConfigError
from dtmerge.merge.engine import merge_models
from dtmerge.rundir import RunDir, hash_model, hash_obj, hash_path, interp_name, run_job

if TYPE_CHECKING:  # the pydantic schema costs ~0.3 s to import; `dtm merge --base` needs none
    from dtmerge.config import RunConfig


def interpolate(base: str | Path, model: str | Path, t: float, out_dir: str | Path) -> dict:
    """Write base + t * (model - base) to `out_dir` (the WiSE-FT line between base and model)."""
    return merge_models(base, [model], out_dir, method="linear", base_interpolation=t)


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

"""The merge engine: exact, streaming merges of full models and LoRA adapters over one base.

Public API:
    merge_models(base, models, out_dir, options=None, **fields) -> dict
    MergeOptions(method="linear", weights=None, params={}, base_interpolation=None,
                 update_scale=1.0, shard_size="2GB", as_adapter=False, fisher_data=None)
    merge_scaled(base, models, {out_dir: update_scale, ...}, options) -> {out_dir: record}
    interpolate(base, model, t, out_dir) -> dict
    merge_stage(cfg, run) -> dict
    METHODS: the registry of merge methods (`get_method(name)` for an instance)
"""

from dtmerge.merge.engine import merge_models, merge_scaled
from dtmerge.merge.methods import METHODS, get_method
from dtmerge.merge.options import MergeOptions
from dtmerge.merge.stage import interpolate, merge_stage

__all__ = ["merge_models", "merge_scaled", "interpolate", "merge_stage", "METHODS", "get_method", "MergeOptions"]

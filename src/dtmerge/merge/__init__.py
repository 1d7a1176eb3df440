"""The merge engine: exact, streaming merges of full models and LoRA adapters over one base.

Public API:
    merge_models(base, models, out_dir, options=None, **fields) -> dict
    MergeOptions(method="linear", weights=None, params={}, base_interpolation=None,
                 update_scale=1.0, shard_size="2GB", as_adapter=False, fisher_data=None)
    merge_scaled(base, models, {out_dir: update_scale, ...}, options) -> {out_dir: record}
    interpolate(base, model, t, out_dir) -> dict
    build_interpolations(cfg, run) -> [the interpolation line's model dirs]
    METHODS: the registry of merge methods (`get_method(name)` for an instance)

Names are imported lazily: checking a method's name (`METHODS`) needs no torch.
"""

from __future__ import annotations

from dtmerge.registry import lazy_exports

_EXPORTS = {
    "merge_models": "dtmerge.merge.engine",
    "merge_scaled": "dtmerge.merge.engine",
    "interpolate": "dtmerge.merge.stage",
    "build_interpolations": "dtmerge.merge.stage",
    "METHODS": "dtmerge.merge.methods",
    "get_method": "dtmerge.merge.methods",
    "MergeOptions": "dtmerge.merge.options",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)

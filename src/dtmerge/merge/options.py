"""The merge engine's settings as one frozen object, checked once.

`MergeOptions` is what a caller asks for (method, weights, parameters, output form); the
engine turns it into a `MergeJob` once the inputs are open: the method instance, its checked
parameters, one weight per model and the scale of the merged update. Every function below
`merge_models` takes the job instead of a dozen loose arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from dtmerge.errors import MergeError

BLOCK_ELEMENTS = 1 << 22  # 4M values (16 MB fp32): TIES reads tensors up to this whole


# Methods that estimate on each sub-model's training data (one data file per model).
_READS_DATA = frozenset({"fisher"})


def data_for_merge(method: str, portions: list[Path]) -> list[Path] | None:
    """The data files a merge with `method` reads: each model's training portion for a method
    that estimates on data (fisher), None for the rest (the one place this is decided)."""
    return list(portions) if method in _READS_DATA else None


@dataclass(frozen=True)
class MergeOptions:
    """What to merge and how (see `merge_models` for the meaning of each field).

    `base_interpolation` t and `update_scale` s both scale the merged update:
    base + t * s * (merged - base). t is the WiSE-FT knob of the config (0..1); s is the
    frontier's lambda (may exceed 1: extrapolation). Both None/1 leave the merge as is.
    """

    method: str = "linear"
    weights: tuple[float, ...] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    base_interpolation: float | None = None
    update_scale: float = 1.0
    shard_size: str = "2GB"
    as_adapter: bool = False
    fisher_data: tuple[Path, ...] | None = None
    block_elements: int = BLOCK_ELEMENTS

    def __post_init__(self):
        # Frozen all the way down: lists become tuples, the params a read-only mapping.
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params or {})))
        if self.fisher_data is not None:
            object.__setattr__(self, "fisher_data", tuple(Path(p) for p in self.fisher_data))
        if self.base_interpolation is not None:
            object.__setattr__(self, "base_interpolation", float(self.base_interpolation))
        object.__setattr__(self, "update_scale", float(self.update_scale))

    @classmethod
    def from_config(cls, merge_cfg, **extra) -> "MergeOptions":
        """Options from a run config's `merge` section (plus fields the config lacks)."""
        return cls(method=merge_cfg.method, weights=merge_cfg.weights,
                   params=dict(merge_cfg.params), base_interpolation=merge_cfg.base_interpolation,
                   shard_size=merge_cfg.shard_size, as_adapter=merge_cfg.as_adapter, **extra)

    @classmethod
    def of(cls, options: "MergeOptions | None", overrides: dict) -> "MergeOptions":
        """`options` with keyword overrides (unknown keywords raise MergeError naming them)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise MergeError(f"merge_models got unknown option(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(known))}")
        base = options or cls()
        return cls(**{**{f.name: getattr(base, f.name) for f in fields(cls)}, **overrides})

    def resolved_weights(self, count: int) -> list[float]:
        """One weight per model (uniform 1/K by default); the single place weights are checked."""
        if self.weights is None:
            return [1.0 / count] * count
        if len(self.weights) != count:
            raise MergeError(f"{len(self.weights)} weights given for {count} models: give one "
                             "per model")
        if abs(sum(self.weights)) < 1e-12:
            raise MergeError(f"merge weights {list(self.weights)} sum to zero")
        return list(self.weights)

    @property
    def scale(self) -> float | None:
        """The factor on the merged update, None when the merge is kept as is."""
        return self.scale_for(self.update_scale)

    def scale_for(self, update_scale: float) -> float | None:
        """The factor on the merged update for one update scale (None: the merge as is)."""
        if self.base_interpolation is None and update_scale == 1.0:
            return None
        t = 1.0 if self.base_interpolation is None else self.base_interpolation
        return t * float(update_scale)


@dataclass(frozen=True)
class MergeJob:
    """One merge, resolved: open inputs, the method instance, checked params and weights."""

    base_src: Any  # FullModelSource
    sources: tuple
    method: Any  # a MergeMethod
    weights: list[float]
    params: dict[str, Any]
    extras: dict[str, Any]
    # One factor on the merged update per output (None: the merge as is); several outputs
    # share one read of the inputs.
    scales: tuple[float | None, ...]
    block_elements: int

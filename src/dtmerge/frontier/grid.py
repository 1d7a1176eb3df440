"""The frontier's candidates: merge method x update scale lambda x sub-model subset.

A candidate is base + lambda * (merge(method, subset) - base). Base interpolation of a merged
model, base + t * (merged' - base) with merged' = base + lambda * update, is the same model as
scale lambda * t, so `interpolations` add scales instead of a separate axis (no model is
merged twice). Linear averaging and unnormalised task arithmetic of the same subset differ
only by a factor K on the update, so the grid keeps one of two candidates that coincide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dtmerge.errors import ConfigError
from dtmerge.merge.methods import METHODS, get_method
from dtmerge.merge.options import MergeOptions


@dataclass(frozen=True)
class Candidate:
    """One merged model of the grid."""

    method: str
    scale: float
    subset: tuple[int, ...]  # sub-model indices merged
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    full_set: bool = True

    @property
    def name(self) -> str:
        subset = "" if self.full_set else "_s" + "-".join(map(str, self.subset))
        return f"{self.method}_x{self.scale:g}{subset}"

    def options(self, fisher_data=None) -> MergeOptions:
        return MergeOptions(method=self.method, params=self.params, update_scale=self.scale,
                            fisher_data=fisher_data)

    def spec(self) -> dict:
        return {"method": self.method, "scale": self.scale, "subset": list(self.subset),
                "params": dict(self.params)}

    def _equivalence_key(self) -> tuple:
        """Candidates with equal keys are the same model (see the module docstring)."""
        if self.method == "linear" or (self.method == "task_arithmetic" and not self.params.get(
                "normalize", False)):
            factor = 1.0 if self.method == "linear" else len(self.subset) * float(
                self.params.get("scaling", 1.0))
            return ("mean-update", round(self.scale * factor, 9), self.subset)
        return (self.method, self.scale, self.subset, tuple(sorted(self.params.items())))


def build_grid(cfg, num_models: int) -> list[Candidate]:
    """Every distinct candidate of `cfg.frontier` (a RunConfig), nearest lambda = 1 first and
    cut to `budget` (so a budget keeps every method at its most plausible scales)."""
    fc = cfg.frontier
    for method in fc.methods:
        METHODS.check(method)  # unknown names: did-you-mean error now, not mid-grid
    unknown = sorted(set(fc.params) - set(fc.methods))
    if unknown:
        raise ConfigError(f"frontier.params names {', '.join(unknown)}, not in frontier.methods "
                          f"({', '.join(fc.methods)})")
    scales = sorted({round(s * t, 9) for s in fc.scales for t in [1.0, *fc.interpolations]})
    if not scales or min(scales) <= 0:
        raise ConfigError(f"frontier.scales/interpolations must give positive scales, got {scales}")
    subsets = [tuple(range(num_models))]
    for subset in fc.subsets:
        bad = [i for i in subset if not 0 <= i < num_models]
        if bad or not subset:
            raise ConfigError(f"frontier.subsets: {subset} is not a non-empty list of sub-model "
                              f"indices 0..{num_models - 1}")
        subsets.append(tuple(sorted(set(subset))))
    grid, seen = [], set()
    subsets = list(dict.fromkeys(subsets))
    ordered = sorted(((abs(s - 1.0), s, j, fc.methods.index(m), m, sub) for s in scales
                      for j, sub in enumerate(subsets) for m in fc.methods))
    for _, scale, _, _, method, subset in ordered:
        params = get_method(method).check_params(fc.params.get(method))
        cand = Candidate(method, scale, subset, params, subset == subsets[0])
        key = cand._equivalence_key()
        if key not in seen:
            seen.add(key)
            grid.append(cand)
    return grid[:fc.budget] if fc.budget else grid

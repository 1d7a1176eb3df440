"""Statistics for comparing variants on the same benchmark items.

Two models scored on the same items are compared with a *paired* bootstrap: the per-item
differences are resampled, which removes the item-difficulty variance that an unpaired test
would count twice. Written by hand with numpy: scipy's `bootstrap` does not return the
centred-null p-value used here and is not a declared dependency.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from statistics import NormalDist
from typing import Callable, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class PairedDiff:
    """Mean difference b - a on paired items with its bootstrap interval.

    Attributes:
        mean: mean of the per-item differences (b - a).
        low, high: percentile bootstrap interval of the mean at `level`.
        p_value: two-sided bootstrap p-value of "mean difference is zero".
        stderr: standard error of the mean difference (normal approximation).
        n: number of paired items.
        level: confidence level of the interval (0.95 by default).
        method: "bootstrap", "ratio-bootstrap" (metrics aggregated as a ratio of sums, such
            as bits per byte) or "normal" (no per-item scores to pair).
        higher_is_better: the metric's direction; a negative difference is an improvement
            when it is False (bits per byte, perplexity).
    """

    mean: float
    low: float
    high: float
    p_value: float
    stderr: float
    n: int
    level: float = 0.95
    method: str = "bootstrap"
    higher_is_better: bool = True

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero."""
        return self.low > 0 or self.high < 0

    @property
    def better(self) -> bool:
        """True when b is better than a in the metric's own direction (not only significantly)."""
        return self.mean > 0 if self.higher_is_better else self.mean < 0

    @property
    def worse(self) -> bool:
        return self.mean < 0 if self.higher_is_better else self.mean > 0

    def mark(self) -> str:
        """'▲' significantly better, '▼' significantly worse (in the metric's direction)."""
        if not self.significant or self.mean == 0:
            return ""
        return "▲" if self.better else "▼"

    def to_dict(self) -> dict:
        return asdict(self) | {"significant": self.significant}


def format_p(p: float | None) -> str:
    """p-value for tables: three decimals, '<0.001' below that."""
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean, sample standard deviation (ddof=1); 0 for n < 2."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return 0.0
    return float(x.std(ddof=1) / math.sqrt(x.size))


def normal_interval(mean: float, stderr: float, level: float = 0.95) -> tuple[float, float]:
    """Normal-approximation interval mean ± z * stderr."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return mean - z * stderr, mean + z * stderr


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    chunk: int = 256,
) -> PairedDiff:
    """Paired bootstrap of the mean difference b - a.

    Args:
        a, b: per-item scores of the two models, aligned item by item (same length).
        n_boot: bootstrap resamples.
        seed: RNG seed (results are reproducible).
        level: confidence level of the percentile interval.
        chunk: resamples drawn at once (bounds memory on large benchmarks).

    Returns:
        A `PairedDiff`. The p-value is the share of resampled means at least as far from the
        observed mean as zero is, i.e. the bootstrap distribution shifted to the null
        (add-one smoothed, so it is never exactly 0).

    Raises:
        ValueError: if the inputs differ in length or are empty.
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired scores must be 1-D and equal length, got {x.shape} and {y.shape}")
    if x.size == 0:
        raise ValueError("no paired items to compare")
    diff = y - x
    n = diff.size
    mean = float(diff.mean())
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    # Floating-point sums of a constant vector can wobble in the last bit; snap to it.
    if np.ptp(diff) == 0:
        low = high = mean
    far = np.abs(means - mean) >= abs(mean) - 1e-12
    p_value = min(1.0, (int(far.sum()) + 1) / (n_boot + 1))
    return PairedDiff(mean, float(low), float(high), p_value, standard_error(diff), n, level)


def _common_ids(a: Mapping, b: Mapping) -> list:
    return sorted(set(a) & set(b), key=lambda k: (str(type(k)), k))


def paired_by_id(
    a: Mapping[object, float], b: Mapping[object, float], higher_is_better: bool = True, **kwargs
) -> PairedDiff | None:
    """Paired bootstrap on the items both mappings (doc_id -> score) share; None if none."""
    common = _common_ids(a, b)
    if not common:
        return None
    d = paired_bootstrap([a[k] for k in common], [b[k] for k in common], **kwargs)
    return replace(d, higher_is_better=higher_is_better)


def paired_ratio_by_id(
    a: Mapping[object, tuple[float, float]], b: Mapping[object, tuple[float, float]],
    transform: Callable = lambda r: r, **kwargs,
) -> PairedDiff | None:
    """`paired_ratio_bootstrap` on the items both mappings (doc_id -> parts) share."""
    common = _common_ids(a, b)
    if not common:
        return None
    return paired_ratio_bootstrap([a[k] for k in common], [b[k] for k in common], transform, **kwargs)


def unpaired_normal(
    score_a: float, se_a: float | None, score_b: float, se_b: float | None, n: int = 0,
    higher_is_better: bool = True,
) -> PairedDiff:
    """Fallback when per-item scores are missing: difference with a normal interval,
    treating the two standard errors as independent (conservative for paired data)."""
    se = math.sqrt((se_a or 0.0) ** 2 + (se_b or 0.0) ** 2)
    mean = score_b - score_a
    low, high = normal_interval(mean, se)
    if se > 0:
        p = math.erfc(abs(mean) / se / math.sqrt(2))
    else:
        p = 1.0 if mean == 0 else 0.0
    return PairedDiff(mean, low, high, p, se, n, method="normal", higher_is_better=higher_is_better)


def _resampled_ratios(num: np.ndarray, den: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return num[idx].sum(axis=1) / den[idx].sum(axis=1)


def ratio_interval(
    num: Sequence[float], den: Sequence[float], transform: Callable = lambda r: r, *,
    n_boot: int = 2000, seed: int = 0, level: float = 0.95, chunk: int = 256,
) -> tuple[float, float, float]:
    """Bootstrap interval of transform(sum(num) / sum(den)) over items resampled together.

    Returns:
        (low, high, stderr): percentile interval at `level` and the bootstrap standard error.
    """
    x, w = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if x.shape != w.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"ratio parts must be 1-D, equal length and non-empty, got {x.shape}, {w.shape}")
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        values[start:stop] = transform(_resampled_ratios(x, w, idx))
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high), float(values.std(ddof=1)) if n_boot > 1 else 0.0


def paired_ratio_bootstrap(
    a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]],
    transform: Callable = lambda r: r, *, higher_is_better: bool = False, n_boot: int = 2000,
    seed: int = 0, level: float = 0.95, chunk: int = 256,
) -> PairedDiff:
    """Paired bootstrap of M(b) - M(a) for a metric M = transform(sum num / sum den).

    The same resampled items enter both ratios, as `paired_bootstrap` does for means; this is
    the right resampling for bits per byte and perplexities, which are ratios of sums over
    documents, not means of per-document values.

    Args:
        a, b: per-item (numerator, denominator) of the two models, aligned item by item.
        transform: applied to each ratio (identity for bits per byte, exp for perplexity).
        higher_is_better: the metric's direction (recorded in the result for its marks).

    Raises:
        ValueError: if the inputs differ in length or are empty.
    """
    pa, pb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if pa.shape != pb.shape or pa.ndim != 2 or pa.shape[1] != 2:
        raise ValueError(f"paired ratio parts must be (n, 2) and equal, got {pa.shape} and {pb.shape}")
    n = pa.shape[0]
    if n == 0:
        raise ValueError("no paired items to compare")
    mean = float(transform(pb[:, 0].sum() / pb[:, 1].sum()) - transform(pa[:, 0].sum() / pa[:, 1].sum()))
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        diffs[start:stop] = (transform(_resampled_ratios(pb[:, 0], pb[:, 1], idx))
                             - transform(_resampled_ratios(pa[:, 0], pa[:, 1], idx)))
    tail = (1 - level) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    if np.array_equal(pa, pb):
        low = high = mean = 0.0
    far = np.abs(diffs - mean) >= abs(mean) - 1e-12
    p_value = min(1.0, (int(far.sum()) + 1) / (n_boot + 1))
    stderr = float(diffs.std(ddof=1)) if n_boot > 1 else 0.0
    return PairedDiff(mean, float(low), float(high), p_value, stderr, n, level,
                      method="ratio-bootstrap", higher_is_better=higher_is_better)


def stratified_paired_bootstrap(
    diffs: Sequence[Sequence[float]], *, higher_is_better: bool = True, n_boot: int = 2000,
    seed: int = 0, level: float = 0.95,
) -> PairedDiff:
    """Paired bootstrap of the mean over tasks of each task's mean difference b - a.

    `diffs` holds one vector of per-item differences per task; items are resampled within
    their own task (a stratified bootstrap), so each task keeps its weight 1/len(diffs) in
    the average, as in the reported "mean over tasks".

    Raises:
        ValueError: no task, or a task without items.
    """
    vectors = [np.asarray(d, dtype=float) for d in diffs]
    if not vectors or any(v.ndim != 1 or v.size == 0 for v in vectors):
        raise ValueError("every task needs at least one paired item")
    mean = float(np.mean([v.mean() for v in vectors]))
    rng = np.random.default_rng(seed)
    means = np.zeros(n_boot)
    for v in vectors:
        for start in range(0, n_boot, 256):  # chunks bound memory on large benchmarks
            stop = min(start + 256, n_boot)
            means[start:stop] += v[rng.integers(0, v.size, size=(stop - start, v.size))].mean(axis=1)
    means /= len(vectors)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    if all(np.ptp(v) == 0 for v in vectors):
        low = high = mean
    far = np.abs(means - mean) >= abs(mean) - 1e-12
    p_value = min(1.0, (int(far.sum()) + 1) / (n_boot + 1))
    stderr = float(means.std(ddof=1)) if n_boot > 1 else 0.0
    return PairedDiff(mean, float(low), float(high), p_value, stderr, min(v.size for v in vectors),
                      level, method="stratified-bootstrap", higher_is_better=higher_is_better)

"""The interpolation line ("train less"), read at any instruction level, in every draw.

The line runs through base (t = 0), the interp_<t> variants and SFT (t = 1), in order of t.
At an instruction level x its value is the linear interpolation between consecutive points
whose x values bracket it; where the curve passes x more than once the best value counts, so
"better than the line" means better than every way of training less that was measured.
Beyond the line's range it is flat at the nearest end: a model past SFT's instruction
following must still keep at least SFT's y to be on the better side.
"""

from __future__ import annotations

import numpy as np

from dtmerge.decision.draws import X_AXIS, Draws, Plane

MIN_POINTS = 3  # base, SFT and at least one interpolation point; fewer: no line verdict


def line_value(draws: Draws, line: list[str], plane: Plane, x: np.ndarray) -> np.ndarray:
    """The line's y at instruction level `x` (one value per draw), in the plane's units."""
    xs = np.stack([draws.of(X_AXIS, p) for p in line])  # (points, draws)
    ys = np.stack([draws.of(plane.name, p) for p in line])
    sign = plane.sign
    best = np.full(x.shape, -np.inf)
    for k in range(len(line) - 1):
        x0, x1, y0, y1 = xs[k], xs[k + 1], ys[k], ys[k + 1]
        lo, hi = np.minimum(x0, x1), np.maximum(x0, x1)
        inside = (lo <= x) & (x <= hi)
        span = x1 - x0
        w = np.divide(x - x0, span, out=np.full(x.shape, 0.5), where=span != 0)
        value = sign * (y0 + w * (y1 - y0))
        best = np.where(inside & (value > best), value, best)
    cols = np.arange(x.shape[0])
    top = ys[np.argmax(xs, axis=0), cols]
    bottom = ys[np.argmin(xs, axis=0), cols]
    outside = np.where(x > xs.max(axis=0), sign * top, sign * bottom)
    return sign * np.where(np.isfinite(best), best, outside)


def distance(draws: Draws, line: list[str], plane: Plane, variant: str) -> np.ndarray:
    """sign * (y - line at the variant's own x), per draw: > 0 is the better side."""
    x = draws.of(X_AXIS, variant)
    return plane.sign * (draws.of(plane.name, variant) - line_value(draws, line, plane, x))

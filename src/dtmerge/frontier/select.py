"""The first pass's pruning: Pareto layers of candidates on a subsample of validation items.

Both axes are higher-is-better: the mean knowledge-and-reasoning score and the mean
instruction-following score. What is recommended is not chosen here: the survivors go to the
one decision (`dtmerge.decision`), which reads every plane and the interpolation line.
"""

from __future__ import annotations

from dtmerge.results.analysis import TradeoffPoint


def pareto_front(points: dict[str, TradeoffPoint]) -> list[str]:
    """Names of the non-dominated points (no other point is >= on both axes and > on one)."""
    def dominated(p: TradeoffPoint) -> bool:
        return any(q.knowledge >= p.knowledge and q.instruction >= p.instruction
                   and (q.knowledge > p.knowledge or q.instruction > p.instruction)
                   for q in points.values())
    return sorted((n for n, p in points.items() if not dominated(p)),
                  key=lambda n: points[n].instruction)


def pareto_layers(points: dict[str, TradeoffPoint], keep: int) -> list[str]:
    """The first pass's survivors: whole Pareto layers (the front, then the front of the
    rest...) while they fit in `keep`. A layer that does not fit keeps one name per distinct
    point first (of candidates that scored the same, the first in grid order, the order of
    `points`), then the tied others, up to what fits; the front keeps every distinct point."""
    order = {n: i for i, n in enumerate(points)}
    left, kept = dict(points), []
    while left and len(kept) < keep:
        layer = pareto_front(left)
        for n in layer:
            del left[n]
        room = keep - len(kept)
        if len(layer) > room:
            seen, distinct = set(), []
            for n in sorted(layer, key=order.get):
                spot = (points[n].instruction, points[n].knowledge)
                if spot not in seen:
                    seen.add(spot)
                    distinct.append(n)
            ties = [n for n in sorted(layer, key=order.get) if n not in distinct]
            layer = (distinct + ties)[:max(room, len(distinct) if not kept else 0)]
        kept += layer
    return kept

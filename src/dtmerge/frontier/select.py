"""Choosing among scored candidates: the Pareto front and the user's target.

Both axes are higher-is-better: the mean knowledge-and-reasoning score and the mean
instruction-following score (the report's trade-off plane), on validation items.
"""

from __future__ import annotations

from dtmerge.errors import ConfigError
from dtmerge.report.analysis import TradeoffPoint


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


def choose(points: dict[str, TradeoffPoint], target: str, sft: TradeoffPoint | None,
           knowledge_weight: float = 0.5) -> tuple[str, str]:
    """(chosen name, why) for `target`: match_sft, weighted, or a candidate name."""
    if not points:
        raise ConfigError("no candidate was scored on validation items: nothing to choose")
    if target == "weighted":
        w = knowledge_weight
        best = max(points, key=lambda n: w * points[n].knowledge + (1 - w) * points[n].instruction)
        return best, (f"highest {w:g} x knowledge + {1 - w:g} x instruction following on "
                      "validation items")
    if target == "match_sft":
        if sft is None:
            raise ConfigError("frontier.target match_sft needs eval/sft.json (the SFT baseline's "
                              "scores); use target weighted or a candidate name")
        level = sft.instruction
        eligible = [n for n, p in points.items() if p.instruction >= level]
        if eligible:
            best = max(eligible, key=lambda n: (points[n].knowledge, points[n].instruction))
            return best, (f"the most knowledge among the {len(eligible)} candidate(s) at or "
                          f"above SFT's instruction following ({level:.3f}) on validation items")
        best = max(points, key=lambda n: (points[n].instruction, points[n].knowledge))
        return best, (f"no candidate reaches SFT's instruction following ({level:.3f}) on "
                      "validation items: the one closest to it")
    if target in points:
        return target, "named by frontier.target"
    raise ConfigError(f"frontier.target {target!r} is neither match_sft, weighted nor a scored "
                      f"candidate ({', '.join(sorted(points))})")

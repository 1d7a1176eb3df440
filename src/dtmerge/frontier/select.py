"""The first pass's pruning, by the decision's own tests on a subsample of validation items.

A candidate is left out of the full validation pass only when the subsample already shows it
cannot be recommended: beyond noise on the worse side of the interpolation line on a plane
that moves (knowledge, or any held-out loss), or beyond noise short of the instruction
target. Of the rest, the `keep` with the strongest evidence (the smallest p-value of the
decision's intersection-union test; grid order breaks ties) go on. What is recommended is not
chosen here: the survivors go to the one decision (`dtmerge.decision`) on all validation items.

`pareto_front` (the accuracy plane only) is shown in frontier.json for reading, never used to
choose.
"""

from __future__ import annotations

from dataclasses import dataclass

from dtmerge.decision.rule import CandidateVerdict
from dtmerge.results.analysis import TradeoffPoint


def pareto_front(points: dict[str, TradeoffPoint]) -> list[str]:
    """Names of the non-dominated points (no other point is >= on both axes and > on one)."""
    def dominated(p: TradeoffPoint) -> bool:
        return any(q.knowledge >= p.knowledge and q.instruction >= p.instruction
                   and (q.knowledge > p.knowledge or q.instruction > p.instruction)
                   for q in points.values())
    return sorted((n for n, p in points.items() if not dominated(p)),
                  key=lambda n: points[n].instruction)


@dataclass
class Screened:
    """The first pass's outcome: survivors in grid order, and why each candidate went where."""

    survivors: list[str]
    why: dict[str, str]


def ruled_out(verdict: CandidateVerdict, margin: float) -> str | None:
    """Why the subsample already excludes `verdict`'s candidate, or None."""
    worse = [p.plane for p in verdict.planes if p.moves and p.word == "worse"]
    if worse:
        return "beyond noise below the line on " + ", ".join(worse)
    if verdict.vs_target.high < -margin:
        return (f"beyond noise short of the target (instruction following minus the target "
                f"{verdict.vs_target.value:+.3f}, interval up to {verdict.vs_target.high:+.3f})")
    return None


def screen(verdicts: list[CandidateVerdict], order: list[str], keep: int,
           margin: float) -> Screened:
    """Survivors of the first pass among `order` (grid order) from their subsample verdicts."""
    by_name = {v.name: v for v in verdicts}
    why, open_ = {}, []
    for name in order:
        v = by_name.get(name)
        reason = None if v is None else ruled_out(v, margin)
        if reason:
            why[name] = "left out: " + reason
        else:
            open_.append(name)
    rank = {n: i for i, n in enumerate(order)}
    ranked = sorted(open_, key=lambda n: (by_name[n].p_value if n in by_name else 1.0, rank[n]))
    kept = set(ranked[:keep])
    for n in ranked:
        p = by_name[n].p_value if n in by_name else None
        evidence = "" if p is None else f" (p {p:.3g})"
        why[n] = ("kept" if n in kept else f"left out: not among the {keep} with the strongest "
                  "evidence") + evidence
    return Screened([n for n in order if n in kept], why)

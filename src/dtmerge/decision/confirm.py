"""The chosen model on TEST items: scored once there, and checked against the line.

The decision never reads test items; this module only reports where its choice lands on the
items it did not see: its difference to every measured point of the line (base, each
interpolation point, SFT) on instruction following and on every plane, with paired bootstrap
intervals, and whether any of them dominates it beyond noise (better beyond noise on one axis
and the choice not better beyond noise on the other).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dtmerge.decision.draws import X_AXIS, draw
from dtmerge.decision.inputs import (
    RunDecision, frontier_results, group_seeds, on_part, run_variants,
)
from dtmerge.decision.line import MIN_POINTS, distance
from dtmerge.decision.rule import Interval, interval
from dtmerge.results.records import VariantResult
from dtmerge.rundir import RunDir


@dataclass
class PointRow:
    """The choice minus one line point on test items (each axis in its better direction)."""

    point: str
    instruction: Interval
    planes: dict[str, Interval]
    dominated_on: list[str] = field(default_factory=list)  # planes where this point dominates


@dataclass
class Confirmation:
    choice: str
    items: dict[str, int]
    rows: list[PointRow]
    line_distance: dict[str, Interval]  # plane -> distance to the line (> 0: better side)
    missing: str | None = None  # why there is no confirmation

    @property
    def dominated(self) -> list[str]:
        return [f"{r.point} ({', '.join(r.dominated_on)})" for r in self.rows if r.dominated_on]

    def to_dict(self) -> dict:
        return {"choice": self.choice, "test_items": self.items, "missing": self.missing,
                "vs_line_points": [{"point": r.point, "instruction": r.instruction.to_dict(),
                                    "planes": {k: v.to_dict() for k, v in r.planes.items()},
                                    "dominated_on": r.dominated_on} for r in self.rows],
                "line_distance": {k: v.to_dict() for k, v in self.line_distance.items()},
                "dominated_by": self.dominated}


def _beaten(diff: Interval) -> bool:
    return diff.high < 0


def test_replicates(run: RunDir, rd: RunDecision) -> dict[str, list[VariantResult]]:
    """Every variant of the run (and the frontier's) on the test items of the decision."""
    every = run_variants(run)
    every.update({n: v for n, v in frontier_results(run, "test").items() if n not in every})
    return group_seeds(on_part(every, rd.split, "test"))


def distances_to_line(replicates: dict[str, list[VariantResult]], line: dict[str, float],
                      instruction: list[str], planes: list, names: list[str], n_boot: int = 2000,
                      seed: int = 0) -> dict[str, dict[str, Interval]]:
    """Variant -> plane -> its distance to the line (> 0: the better side), paired with the
    line's points and with the variant's own x resampled in the same draws; empty when fewer
    than MIN_POINTS points of `line` are among `replicates`."""
    order = [n for n, _ in sorted(line.items(), key=lambda kv: kv[1]) if n in replicates]
    names = [n for n in names if n in replicates and n not in line]
    if len(order) < MIN_POINTS or not names:
        return {}
    draws = draw({n: replicates[n] for n in [*order, *names]}, instruction, planes, n_boot, seed)
    order = [n for n in order if n in draws.variants]
    if len(order) < MIN_POINTS:
        return {}
    return {n: {p.name: interval(distance(draws, order, p, n)) for p in planes}
            for n in names if n in draws.variants}


def line_distances(run: RunDir, rd: RunDecision, names: list[str], n_boot: int = 2000,
                   seed: int = 0, test: dict[str, list[VariantResult]] | None = None
                   ) -> dict[str, dict[str, Interval]]:
    """Method -> plane -> its distance to the line on the decision's test items (`test`: the
    run's `test_replicates`, read here when not given)."""
    test = test_replicates(run, rd) if test is None else test
    return distances_to_line(test, rd.line, rd.instruction, rd.planes, names, n_boot, seed)


def confirm(run: RunDir, rd: RunDecision, n_boot: int = 2000, seed: int = 0,
            test: dict[str, list[VariantResult]] | None = None) -> Confirmation:
    """The decision's choice on the test items of the decision's split (`test`: the run's
    `test_replicates`, read here when not given)."""
    choice = rd.decision.choice
    test = test_replicates(run, rd) if test is None else test
    if choice not in test:
        return Confirmation(choice, {}, [], {}, missing=(
            f"{choice} has no result on test items (a frontier candidate is scored there only "
            f"once chosen): rerun `dtm frontier {run.root}`"))
    names = [n for n in rd.line if n in test]
    wanted = {n: test[n] for n in dict.fromkeys([choice, *names])}
    draws = draw(wanted, rd.instruction, rd.planes, n_boot, seed)
    rows = []
    for point in names:
        if point == choice:
            continue
        dx = interval(draws.of(X_AXIS, choice) - draws.of(X_AXIS, point))
        planes, dominated = {}, []
        for plane in rd.planes:
            dy = interval(plane.sign * (draws.of(plane.name, choice) - draws.of(plane.name, point)))
            planes[plane.name] = dy
            if (_beaten(dx) and dy.low <= 0) or (_beaten(dy) and dx.low <= 0):
                dominated.append(plane.name)
        rows.append(PointRow(point, dx, planes, dominated))
    line = [n for n, _ in sorted(rd.line.items(), key=lambda kv: kv[1]) if n in draws.variants]
    distances = {}
    if choice not in rd.line and len(line) >= MIN_POINTS:
        distances = {p.name: interval(distance(draws, line, p, choice)) for p in rd.planes}
    return Confirmation(choice, draws.items, rows, distances)

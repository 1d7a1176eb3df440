"""The one decision: which model to ship, chosen on validation items.

A candidate (a method: DTM, a recipe, a frontier merge, a best checkpoint) can be recommended
only if, on validation items,
1. it meets the target: its instruction following is non-inferior to the target level (the
   one-sided lower bound of the paired difference is above -margin), and
2. it lies beyond noise on the better side of the interpolation line (base -> SFT, "train
   less") on EVERY plane that moves: knowledge, and each held-out loss. A plane moves when SFT
   differs from the base on it beyond noise; a plane where nothing moves is said so and is no
   evidence either way. With no moving plane, or a line of fewer than three points, no
   candidate can be recommended.
Both are one-sided bootstrap tests; a candidate's p-value is the largest of its tests (all
must hold: an intersection-union test), and the family of candidates is Holm-corrected at
`alpha`. Of the candidates that pass, the one that keeps the most (the primary plane:
knowledge when it moves, else the first moving loss) is chosen. When none passes, the answer
is the point of the line (an interpolation point, or SFT) that meets the target with the
least forgetting, and the decision says that no method beat training less on this run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from dtmerge.decision.draws import X_AXIS, Draws, Plane
from dtmerge.decision.line import MIN_POINTS, distance

LEVEL = 0.95  # two-sided intervals shown beside the tests


@dataclass(frozen=True)
class Settings:
    """The user's target (cfg.answer), and the bootstrap's size and seed."""

    target: str | float = "match_sft"
    margin: float = 0.05
    min_instruction: float | None = None
    alpha: float = 0.05

    @classmethod
    def from_config(cls, answer) -> "Settings":
        return cls(answer.target, answer.margin, answer.min_instruction, answer.alpha)

    def describe(self, sft_x: float | None) -> str:
        if self.target == "match_sft":
            level = "" if sft_x is None else f" ({sft_x:.3f})"
            return f"match SFT's instruction following{level} within {self.margin:g}"
        level = self.min_instruction if self.target == "max_knowledge" else float(self.target)
        return f"instruction following at least {level:.3f} within {self.margin:g}"


@dataclass
class Interval:
    """An observed value with its bootstrap interval and one-sided p-value."""

    value: float
    low: float
    high: float
    p: float | None = None  # one-sided: of "not on the better side" (or "below the target")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PlaneVerdict:
    plane: str
    moves: bool
    distance: Interval | None  # sign * (y - line) : > 0 is the better side
    word: str  # better / worse / within noise / no verdict (why)


@dataclass
class CandidateVerdict:
    name: str
    instruction: float
    vs_target: Interval  # x - target level
    meets_target: bool
    planes: list[PlaneVerdict]
    p_value: float  # the largest p of its tests (1.0 when there is no evidence)
    qualified: bool = False  # passed Holm

    def plane(self, name: str) -> PlaneVerdict | None:
        return next((p for p in self.planes if p.plane == name), None)


@dataclass
class Decision:
    """What to ship and why; `to_dict` is what report.json and export's decision.json hold."""

    choice: str
    kind: str  # "method": beat the line; "line": train less; "sft"; "none": nothing to choose
    headline: str  # the first sentence a user reads
    target: str
    planes: list[dict]
    candidates: list[CandidateVerdict]
    line: list[dict]
    seeds: dict[str, int]
    items: dict[str, int]
    alpha: float
    n_boot: int
    notes: list[str] = field(default_factory=list)

    @property
    def train_less(self) -> bool:
        return self.kind in ("line", "sft")

    def to_dict(self) -> dict:
        return {"choice": self.choice, "kind": self.kind, "headline": self.headline,
                "target": self.target, "planes": self.planes,
                "candidates": [asdict(c) for c in self.candidates], "line": self.line,
                "seeds": self.seeds, "validation_items": self.items, "alpha": self.alpha,
                "bootstrap_draws": self.n_boot, "notes": self.notes}


def interval(values: np.ndarray, p: float | None = None) -> Interval:
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(values[1:], [tail, 1 - tail])
    return Interval(float(values[0]), float(low), float(high), p)


def _p_at_most(values: np.ndarray, bound: float) -> float:
    """One-sided bootstrap p of "the true value is <= bound" (add-one smoothed)."""
    draws = values[1:]
    return float((np.sum(draws <= bound) + 1) / (draws.size + 1))


def plane_moves(draws: Draws, plane: Plane) -> tuple[bool, Interval | None]:
    """Does SFT differ from the base on this plane beyond noise (95% interval excludes 0)?"""
    if "sft" not in draws.variants or "base" not in draws.variants:
        return False, None
    d = draws.of(plane.name, "sft") - draws.of(plane.name, "base")
    iv = interval(d)
    return bool(np.ptp(d[1:]) > 0 and (iv.low > 0 or iv.high < 0)), iv


def _target_gap(draws: Draws, s: Settings, name: str) -> np.ndarray | None:
    """x - target level per draw; None when the target needs SFT and there is none."""
    x = draws.of(X_AXIS, name)
    if s.target == "match_sft":
        return None if "sft" not in draws.variants else x - draws.of(X_AXIS, "sft")
    level = s.min_instruction if s.target == "max_knowledge" else float(s.target)
    return x - level


def judge(draws: Draws, name: str, line: list[str], planes: list[Plane],
          moving: dict[str, bool], s: Settings) -> CandidateVerdict:
    """One candidate's tests: the target, and its side of the line on every plane."""
    gap = _target_gap(draws, s, name)
    p_target = 1.0 if gap is None else _p_at_most(gap, -s.margin)
    vs_target = interval(gap if gap is not None else np.zeros(draws.n_boot + 1), p_target)
    verdicts, ps = [], [p_target]
    for plane in planes:
        if len(line) < MIN_POINTS:
            verdicts.append(PlaneVerdict(plane.name, moving[plane.name], None,
                                         f"no verdict (the line has {len(line)} points; "
                                         f"{MIN_POINTS} needed)"))
            continue
        d = distance(draws, line, plane, name)
        if np.ptp(d[1:]) == 0:
            verdicts.append(PlaneVerdict(plane.name, moving[plane.name], interval(d),
                                         "no verdict (zero noise estimate)"))
            continue
        iv = interval(d, _p_at_most(d, 0.0))
        word = "better" if iv.low > 0 else "worse" if iv.high < 0 else "within noise"
        verdicts.append(PlaneVerdict(plane.name, moving[plane.name], iv, word))
        if moving[plane.name]:
            ps.append(iv.p)
    evidence = any(v.moves and v.distance is not None and v.distance.p is not None
                   for v in verdicts)
    p = max(ps) if evidence else 1.0
    return CandidateVerdict(name, float(draws.of(X_AXIS, name)[0]), vs_target,
                            p_target <= s.alpha, verdicts, p)


def holm(pvalues: dict[str, float], alpha: float) -> set[str]:
    """Names whose null is rejected by Holm's step-down procedure at family level `alpha`."""
    order = sorted(pvalues, key=lambda n: (pvalues[n], n))
    m, passed = len(order), set()
    for i, name in enumerate(order):
        if pvalues[name] > alpha / (m - i):
            break
        passed.add(name)
    return passed


def decide(draws: Draws, candidates: list[str], line: dict[str, float], planes: list[Plane],
           settings: Settings) -> Decision:
    """The decision on the validation draws (see the module docstring)."""
    present = set(draws.variants)
    line_names = [n for n, _ in sorted(line.items(), key=lambda kv: kv[1]) if n in present]
    moving, plane_rows = {}, []
    for plane in planes:
        moves, iv = plane_moves(draws, plane)
        moving[plane.name] = moves
        plane_rows.append({"plane": plane.name, "tasks": list(plane.tasks), "moves": moves,
                           "lower_is_better": plane.lower_is_better,
                           "sft_minus_base": iv.to_dict() if iv else None})
    cands = [c for c in candidates if c in present and c not in line]
    verdicts = [judge(draws, c, line_names, planes, moving, settings) for c in cands]
    passed = holm({v.name: v.p_value for v in verdicts}, settings.alpha) if verdicts else set()
    for v in verdicts:
        v.qualified = v.name in passed and v.p_value < 1.0
    primary = next((p for p in planes if moving[p.name]), None)
    sft_x = float(draws.of(X_AXIS, "sft")[0]) if "sft" in present else None
    target = settings.describe(sft_x)
    line_rows = [{"name": n, "t": line[n], "instruction": float(draws.of(X_AXIS, n)[0]),
                  **{p.name: float(draws.of(p.name, n)[0]) for p in planes}} for n in line_names]

    def keep_key(name: str) -> tuple:  # most kept on the primary plane, then instruction
        y = primary.sign * draws.of(primary.name, name)[0] if primary else 0.0
        return (y, draws.of(X_AXIS, name)[0])

    common = dict(target=target, planes=plane_rows, candidates=verdicts, line=line_rows,
                  seeds={n: draws.seeds[n] for n in [*cands, *line_names]}, items=draws.items,
                  alpha=settings.alpha, n_boot=draws.n_boot,
                  notes=[f"The decision rests on {seeds_phrase(draws.seeds, [*cands, *line_names])}"
                         + (" (seed replicates in <run>/seeds/)." if max(
                             draws.seeds.values(), default=1) > 1 else ".")]
                  + [f"{n} left out: {why}" for n, why in draws.dropped.items()])
    qualified = [v.name for v in verdicts if v.qualified]
    if qualified:
        best = max(qualified, key=keep_key)
        wins = [p.plane for p in next(v for v in verdicts if v.name == best).planes
                if p.moves and p.word == "better"]
        return Decision(best, "method", (
            f"Ship {best}: on validation items it meets the target ({target}) and lies beyond "
            f"noise on the better side of the train-less line on {_join(wins)} (Holm-corrected "
            f"over {len(verdicts)} candidate(s); {seeds_phrase(draws.seeds, [best])})."),
            **common)
    why = _why_none(verdicts, moving, line_names)
    meets = []
    for n in line_names:
        gap = _target_gap(draws, settings, n)
        if gap is not None and _p_at_most(gap, -settings.margin) <= settings.alpha:
            meets.append(n)
    if not meets:
        choice = "sft" if "sft" in present else (line_names[-1] if line_names else "none")
        return Decision(choice, "sft" if choice == "sft" else "none", (
            f"Ship {choice}: nothing measured meets the target ({target}) on validation items, "
            f"and no method beat training less on this run ({why})."), **common)
    choice = max(meets, key=keep_key) if primary else ("sft" if "sft" in meets else meets[-1])
    if choice == "sft":
        head = (f"Ship sft: no method beat training less on this run ({why}), and no point "
                f"of the line toward the base meets the target ({target}) with less forgetting."
                + _unproven_line_point(draws, settings, line_names, primary))
        return Decision("sft", "sft", head, **common)
    return Decision(choice, "line", (
        f"Train less: ship {choice} (t = {line[choice]:g} of the way from the base to SFT). No "
        f"method beat training less on this run ({why}); {choice} meets the target ({target}) "
        f"with the least forgetting on validation items."), **common)


def _unproven_line_point(draws: Draws, s: Settings, line: list[str],
                         primary: Plane | None) -> str:
    """When SFT is the answer only because the items are too few: the line point that keeps
    the most of those whose observed instruction following is within the margin of the
    target (but whose interval is not), in one clause."""
    if primary is None:
        return ""
    maybe = []
    for n in line:
        gap = _target_gap(draws, s, n)
        if n == "sft" or gap is None:
            continue
        iv = interval(gap)
        kept = primary.sign * (draws.of(primary.name, n) - draws.of(primary.name, "sft"))
        if iv.value >= -s.margin and kept[0] > 0:
            maybe.append((kept[0], n, iv, interval(kept)))
    if not maybe:
        return ""
    _, n, iv, kept = max(maybe)
    return (f" {n} might meet it (instruction following minus the target {iv.value:+.3f} "
            f"[{iv.low:+.3f}, {iv.high:+.3f}]) while keeping {kept.value:+.3f} "
            f"[{kept.low:+.3f}, {kept.high:+.3f}] more {primary.name}, but these validation "
            "items cannot show it within the margin: score more items or set a wider "
            "answer.margin if that trade suits you.")


def _why_none(verdicts: list[CandidateVerdict], moving: dict[str, bool], line: list[str]) -> str:
    if len(line) < MIN_POINTS:
        return f"the line has {len(line)} measured point(s), {MIN_POINTS} are needed"
    if not any(moving.values()):
        return "SFT moved no plane beyond noise, so no plane holds evidence"
    if not verdicts:
        return "no method was scored"
    return (f"none of {len(verdicts)} candidate(s) met the target and lay beyond noise above "
            "the line on every moving plane")


def seeds_phrase(seeds: dict[str, int], names: list[str]) -> str:
    counts = {seeds.get(n, 1) for n in names}
    if counts == {1}:
        return "one training seed; item noise only"
    return f"{min(counts)}-{max(counts)} training seeds; seed and item noise" if len(counts) > 1 \
        else f"{counts.pop()} training seeds; seed and item noise"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]

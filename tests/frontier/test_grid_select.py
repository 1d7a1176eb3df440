"""The candidate grid and the first pass's screening of scored candidates (no model needed)."""

from __future__ import annotations

import pytest

from dtmerge.config import RunConfig
from dtmerge.errors import ConfigError, MergeError
from dtmerge.frontier.grid import build_grid
from dtmerge.decision.rule import CandidateVerdict, Interval, PlaneVerdict
from dtmerge.frontier.select import pareto_front, screen
from dtmerge.results.analysis import TradeoffPoint


def _cfg(**frontier):
    return RunConfig.model_validate({"name": "x", "model": {"path": "m"}, "data": {"path": "d"},
                                     "frontier": frontier})


def test_grid_orders_by_scale_dedups_and_folds_interpolations():
    grid = build_grid(_cfg(methods=["linear", "task_arithmetic", "ties"], scales=[0.25, 1.0],
                           interpolations=[0.5], subsets=[[0, 2]]), 4)
    names = [c.name for c in grid]
    assert names[:3] == ["linear_x1", "task_arithmetic_x1", "ties_x1"]
    # task arithmetic (sum of 4 updates) at 0.25 is the linear average at 1: kept once
    assert "task_arithmetic_x0.25" not in names
    assert "linear_x0.5" in names and "ties_x0.125" in names  # 1 * 0.5, 0.25 * 0.5
    assert "ties_x1_s0-2" in names
    assert len(names) == len(set(names))
    assert [c.name for c in build_grid(_cfg(budget=2), 4)] == ["linear_x1", "ties_x1"]


def test_grid_rejects_bad_settings():
    with pytest.raises(ConfigError, match="did you mean|ties"):
        build_grid(_cfg(methods=["tiess"]), 3)
    with pytest.raises(ConfigError, match="subsets"):
        build_grid(_cfg(subsets=[[0, 5]]), 3)
    with pytest.raises(MergeError, match="densty"):
        build_grid(_cfg(methods=["ties"], params={"ties": {"densty": 0.3}}), 3)


def _pts(**xy):
    return {n: TradeoffPoint(n, i, k, 0.0) for n, (i, k) in xy.items()}


def test_pareto_front_is_the_accuracy_plane_front():
    pts = _pts(a=(0.2, 0.9), b=(0.5, 0.8), c=(0.4, 0.7), d=(0.8, 0.5), e=(0.3, 0.6))
    assert pareto_front(pts) == ["a", "b", "d"]


def _verdict(name, p, loss="better", target=(0.0, -0.02, 0.03), moves=True):
    planes = [PlaneVerdict("knowledge", moves, Interval(0.1, 0.05, 0.15), "better"),
              PlaneVerdict("loss on heldout", moves, Interval(-0.1, -0.15, -0.05), loss)]
    return CandidateVerdict(name, 0.6, Interval(*target), True, planes, p)


def test_first_pass_leaves_out_only_what_the_subsample_excludes_then_keeps_the_strongest():
    verdicts = [_verdict("ties_x4", 0.001, loss="worse"),  # accuracy fine, loss below the line
                _verdict("short", 0.001, target=(-0.3, -0.4, -0.2)),  # far below the target
                _verdict("weak", 0.4, loss="within noise"),
                _verdict("strong", 0.01),
                _verdict("still", 0.3, loss="worse", moves=False)]  # a plane that does not move
    out = screen(verdicts, ["ties_x4", "short", "weak", "strong", "still", "unscored"], 2, 0.05)
    assert out.survivors == ["strong", "still"]  # grid order; smallest p first to fill `keep`
    assert out.why["ties_x4"] == "left out: beyond noise below the line on loss on heldout"
    assert out.why["short"].startswith("left out: beyond noise short of the target")
    assert out.why["weak"].startswith("left out: not among the 2") and "p 0.4" in out.why["weak"]
    assert out.why["unscored"].startswith("left out: not among")  # no verdict: weakest evidence
    assert screen(verdicts, ["weak", "strong"], 6, 0.05).survivors == ["weak", "strong"]


def test_frontier_target_moved_to_the_answer():
    from dtmerge.config import FrontierConfig

    with pytest.raises(ValueError, match="answer.target"):
        FrontierConfig(target="match_sft")

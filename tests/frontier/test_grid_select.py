"""The candidate grid and the choice among scored candidates (no model needed)."""

from __future__ import annotations

import pytest

from dtmerge.config import RunConfig
from dtmerge.errors import ConfigError, MergeError
from dtmerge.frontier.grid import build_grid
from dtmerge.frontier.select import pareto_front, pareto_layers
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


def test_pareto_front_and_layers():
    pts = _pts(a=(0.2, 0.9), b=(0.5, 0.8), c=(0.4, 0.7), d=(0.8, 0.5), e=(0.3, 0.6))
    assert pareto_front(pts) == ["a", "b", "d"]
    assert pareto_layers(pts, 4) == ["a", "b", "d", "c"]
    assert pareto_layers(pts, 2) == ["a", "b", "d"]  # the front is not cut
    same = _pts(x=(0.5, 0.5), y=(0.5, 0.5), z=(0.5, 0.5), w=(0.1, 0.1))
    assert pareto_layers(same, 2) == ["x", "y"]  # equal scores: in grid order
    wide = _pts(p=(0.1, 0.9), q=(0.9, 0.1), r=(0.1, 0.9), s=(0.5, 0.5))
    assert pareto_layers(wide, 2) == ["p", "q", "s"]  # every distinct front point


def test_frontier_target_moved_to_the_answer():
    from dtmerge.config import FrontierConfig

    with pytest.raises(ValueError, match="answer.target"):
        FrontierConfig(target="match_sft")

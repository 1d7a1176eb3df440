"""The testbed build cache and a shrunken end-to-end `dtm demo`."""

from __future__ import annotations

import json

import pytest

from dtmerge.errors import ConfigError
from dtmerge.testbed.build import build_testbed
from dtmerge.testbed.demo import line_gap, summarise


def test_line_gap_reads_the_interpolation_line():
    scores = {"base": {"format": 0.0, "knowledge": 1.0}, "sft": {"format": 1.0, "knowledge": 0.6},
              "interp_0.5": {"format": 0.5, "knowledge": 0.9},
              "dtm": {"format": 0.75, "knowledge": 0.8}, "dtm_far": {"format": 2.0}}
    assert line_gap(scores, "dtm") == pytest.approx(0.8 - 0.75)
    assert line_gap(scores, "dtm_far") is None
    table = summarise([{"scores": scores}, {"scores": {**scores, "dtm": {"format": 0.25,
                                                                         "knowledge": 0.9}}}])
    assert table["dtm"]["knowledge"]["mean"] == pytest.approx(0.85)
    assert table["dtm"]["gap_to_line"]["n_seeds"] == 2


def test_unknown_size_is_a_user_error(tmp_path):
    with pytest.raises(ConfigError, match="small"):
        build_testbed(0, "huge", tmp_path)


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path, monkeypatch):
    import torch

    from dtmerge.cli.main import main

    torch.set_num_threads(1)
    monkeypatch.setenv("DTMERGE_CACHE", str(tmp_path / "cache"))
    logs = []
    tb = build_testbed(1, "tiny", log=logs.append)
    assert tb.base_model.parent.parent == tmp_path / "cache"
    assert (tb.base_model / "config.json").exists() and tb.info["pretrain_cpu_s"] > 0
    again = build_testbed(1, "tiny", log=logs.append)  # cached: not rebuilt
    assert again.root == tb.root and any("reusing" in line for line in logs)

    from dtmerge.testbed import demo

    monkeypatch.setattr(demo, "INTERPOLATION", [0.5])
    code = main(["demo", "--size", "tiny", "--seed", "1", "--num-portions", "2",
                 "--runs-dir", str(tmp_path / "runs")])
    assert code == 0
    summary = json.loads((tmp_path / "runs" / "demo-tiny-k2-seeds1-1.json").read_text())
    scores = summary["per_seed"][0]["scores"]
    assert {"base", "sft", "dtm", "dtm_long", "interp_0.5"} <= set(scores)
    for row in scores.values():
        assert 0.0 <= row["knowledge"] <= 1.0 and 0.0 <= row["format"] <= 1.0
    run = tmp_path / "runs" / "demo-tiny-seed1-k2"
    assert (run / "report" / "report.md").exists()
    assert (tmp_path / "runs" / "demo-tiny-seed1-k2-long" / "models" / "dtm").exists()

"""The testbed build cache and a shrunken end-to-end `dtm demo`."""

from __future__ import annotations

import json

import pytest

from dtmerge.errors import ConfigError
from dtmerge.demo.testbed.build import build_testbed
from dtmerge.rundir import RunDir
from dtmerge.demo.testbed.demo import format_table, line_gaps, summarise, train_seed_results


def test_demo_gaps_are_the_reports_verdicts(tmp_path):
    """The demo summary quotes the report's own distance to the line (one definition)."""
    run = RunDir(tmp_path / "run")
    (run.root / "report").mkdir(parents=True)
    (run.root / "report" / "report.json").write_text(json.dumps({"tradeoff": {"verdicts": {
        "dtm": {"distance": 0.05, "text": "above"},
        "dtm_long": {"distance": None, "text": "outside the line"}}}}))
    assert line_gaps(run) == {"dtm": 0.05}
    assert line_gaps(RunDir(tmp_path / "no-report")) == {}
    scores = {"base": {"knowledge": 1.0}, "dtm": {"knowledge": 0.8}}
    table = summarise([{"scores": scores, "gaps": {"dtm": 0.05}},
                       {"scores": {**scores, "dtm": {"knowledge": 0.9}}, "gaps": {"dtm": -0.15}}])
    assert table["dtm"]["knowledge"]["mean"] == pytest.approx(0.85)
    assert table["dtm"]["gap_to_line"]["mean"] == pytest.approx(-0.05)
    assert table["dtm"]["gap_to_line"]["n_seeds"] == 2
    assert "gap_to_line" not in table["base"]
    # an empty gap says why instead of a bare dash
    rows = {line.split()[0]: line for line in format_table(
        {**table, "dtm_long": {"knowledge": table["dtm"]["knowledge"]}}).splitlines()}
    assert rows["base"].rstrip().endswith("the line")
    assert rows["dtm_long"].rstrip().endswith("off the line")
    assert rows["dtm"].rstrip().endswith("±0.141")


def test_demo_with_training_seeds_summarises_their_spread_and_says_what_rests_on_one():
    world = {"scores": {"base": {"knowledge": 1.0}, "l2": {"knowledge": 0.9},
                        "sft_best": {"knowledge": 0.5}},
             "gaps": {"l2": 0.2}, "recipe_seconds": {"l2": 100.0},
             "train_seed_scores": {2: {"l2": {"knowledge": 0.7}}, 1: {"l2": {"knowledge": 0.8}}}}
    rows = train_seed_results(world)
    assert [r["scores"]["l2"]["knowledge"] for r in rows] == [0.9, 0.8, 0.7]  # seed order
    table = summarise(rows)
    assert table["l2"]["knowledge"]["n_seeds"] == 3
    assert table["l2"]["knowledge"]["std"] == pytest.approx(0.1)
    assert table["l2"]["gap_to_line"]["n_seeds"] == 1  # the main run's report only
    text = format_table(table)
    line = {ln.split()[0]: ln for ln in text.splitlines()}
    assert "0.800 ±0.100" in line["l2"] and "(n=1)" in line["l2"] and "(n=1)" in line["sft_best"]
    assert "rests on k seeds" in text


def test_unknown_size_is_a_user_error(tmp_path):
    with pytest.raises(ConfigError, match="small"):
        build_testbed(0, "huge", tmp_path)


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path, monkeypatch, capsys):
    import torch

    from dtmerge.cli.main import main

    torch.set_num_threads(1)
    monkeypatch.setenv("DTMERGE_CACHE_DIR", str(tmp_path / "cache"))  # the one cache variable
    logs = []
    tb = build_testbed(1, "tiny", log=logs.append)
    assert tb.base_model.parent.parent == tmp_path / "cache" / "testbed"
    assert (tb.base_model / "config.json").exists() and tb.info["pretrain_cpu_s"] > 0
    again = build_testbed(1, "tiny", log=logs.append)  # cached: not rebuilt
    assert again.root == tb.root and any("reusing" in line for line in logs)

    from dtmerge.demo.testbed import demo

    monkeypatch.setattr(demo, "INTERPOLATION", [0.5])
    monkeypatch.setattr("dtmerge.executors.sizing.usable_cores", lambda: 2)  # as on this 2-core box
    code = main(["demo", "--size", "tiny", "--seed", "1", "--num-portions", "2",
                 "--runs-dir", str(tmp_path / "runs")])
    assert code == 0
    summary = json.loads((tmp_path / "runs" / "demo-tiny-k2-seeds1-1.json").read_text())
    scores = summary["per_seed"][0]["scores"]
    assert {"base", "sft", "dtm", "dtm_long", "interp_0.5"} <= set(scores)
    for row in scores.values():
        assert 0.0 <= row["knowledge"] <= 1.0 and 0.0 <= row["format"] <= 1.0
    run = tmp_path / "runs" / "demo-tiny-seed1-k2"
    report = json.loads((run / "report" / "report.json").read_text())
    reported = {v: d["distance"] for v, d in report["tradeoff"]["verdicts"].items()
                if d["distance"] is not None}
    assert summary["per_seed"][0]["gaps"] == reported
    assert (run / "report" / "report.md").exists()
    assert (tmp_path / "runs" / "demo-tiny-seed1-k2-long" / "models" / "dtm").exists()
    # parallel_jobs auto: the small model's jobs ran side by side, one thread each
    out = capsys.readouterr().out
    assert "(process pool)" in out
    manifest = json.loads((run / "manifest.json").read_text())["jobs"]
    assert manifest["train:sub_0"]["threads"] == 1

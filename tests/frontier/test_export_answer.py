"""`dtm export RUN answer`: the decision's choice is what gets shipped, with its reasons."""

from __future__ import annotations

import json

import pytest

from frontier_run import copy_run
from dtmerge.errors import DtmError

QUIET = dict(log=lambda _m: None)


def test_export_answer_ships_the_reports_choice_with_decision_json(evaluated_run, tmp_path):
    from dtmerge.publish.export import export_answer
    from dtmerge.frontier import frontier_stage
    from dtmerge.report import write_report

    cfg, run = copy_run(*evaluated_run, tmp_path)
    (run.root / "config.yaml").write_text(cfg.to_yaml())
    frontier_stage(cfg, run, **QUIET)
    report = write_report(run, cfg.report.knowledge_tasks, cfg.report.instruction_tasks,
                          n_boot=cfg.report.bootstrap_samples, seed=cfg.seed, answer=cfg.answer,
                          split_seed=cfg.eval.split_seed)
    choice, dest = export_answer(run.root, tmp_path / "shipped", **QUIET)
    assert choice == report["data"]["answer"]["ship"]
    record = json.loads((dest / "decision.json").read_text())
    assert record["choice"] == choice and record["headline"] == report["data"]["answer"]["sentences"][0]
    assert record["confirmation"]["choice"] == choice
    assert (dest / "config.json").is_file()  # a standalone model directory
    assert not list(tmp_path.glob(".shipped.answer-partial"))
    with pytest.raises(DtmError, match="already exists"):
        export_answer(run.root, dest, **QUIET)


def test_cli_export_answer(evaluated_run, tmp_path, capsys):
    from dtmerge.cli.main import main

    cfg, run = copy_run(*evaluated_run, tmp_path)
    (run.root / "config.yaml").write_text(cfg.to_yaml())
    assert main(["export", str(run.root), "answer", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "decision.json").is_file()
    out = capsys.readouterr().out
    assert "exported" in out and json.loads((tmp_path / "out" / "decision.json").read_text())[
        "headline"] in out

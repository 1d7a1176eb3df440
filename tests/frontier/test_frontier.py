"""`dtm frontier` on a tiny run: merge equality, scoring equality with `dtm eval`, export,
resume after a kill, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from frontier_run import copy_run
from dtmerge.errors import ConfigError
from dtmerge.evaluate.split import split_of
from dtmerge.frontier import build_grid, export_candidate, frontier_stage
from dtmerge.frontier.score import FrontierContext, merge_candidate

QUIET = dict(log=lambda _m: None)


def _weights(d):
    return load_file(str(d / "model.safetensors"))


def test_lambda_one_linear_equals_the_runs_own_merge(evaluated_run, tmp_path):
    cfg, run = evaluated_run
    cand = next(c for c in build_grid(cfg, 3) if c.name == "linear_x1")
    merge_candidate(FrontierContext.open(cfg, run, **QUIET), cand, tmp_path / "cand")
    mine, theirs = _weights(tmp_path / "cand"), _weights(run.model("dtm"))
    assert mine.keys() == theirs.keys()
    for name in mine:
        assert torch.equal(mine[name], theirs[name]), name


def test_frontier_scores_exactly_as_dtm_eval_and_exports_the_choice(evaluated_run, tmp_path):
    cfg, run = copy_run(*evaluated_run, tmp_path)
    summary = frontier_stage(cfg, run, **QUIET)
    names = [c["name"] for c in summary["candidates"]]
    assert names[0] == "linear_x1" and len(names) == 6
    assert all(c["prune"] is not None for c in summary["candidates"])
    # the first pass says for each candidate why it went on or not; only survivors are validated
    for c in summary["candidates"]:
        assert c["first_pass"].startswith(("kept", "left out: ")), c
        assert (c["validation"] is not None) == c["first_pass"].startswith("kept"), c
    # linear_x1 is the run's own dtm model: its validation items score as eval/dtm.json's do
    if (run.root / "frontier/eval/linear_x1.validation.json").exists():
        cand = json.loads((run.root / "frontier/eval/linear_x1.validation.json").read_text())
    else:  # pruned: its first-pass items then
        cand = json.loads((run.root / "frontier/eval/linear_x1.prune.json").read_text())
    dtm = json.loads(run.eval_file("dtm").read_text())
    split = split_of(cfg.eval)
    for task, result in cand["tasks"].items():
        ref = {it["doc_id"]: it for it in dtm["tasks"][task]["items"]}
        assert result["items"], task
        for item in result["items"]:
            assert split.part(task, item["doc_id"]) == "validation"
            if "logprobs" in item:
                assert item["score"] == ref[item["doc_id"]]["score"]
                assert item["logprobs"] == pytest.approx(ref[item["doc_id"]]["logprobs"], abs=1e-3)
            else:  # a loss document: its summed log-likelihood, to float noise
                assert item == pytest.approx(ref[item["doc_id"]], rel=1e-4)
    assert cand["settings"]["num_fewshot"] == dtm["settings"]["num_fewshot"]
    # the frontier's choice is the one decision: the report's Answer makes the same, word for word
    from dtmerge.report import write_report

    chosen = summary["chosen"]
    out = write_report(run, cfg.report.knowledge_tasks, cfg.report.instruction_tasks,
                       n_boot=cfg.report.bootstrap_samples, seed=cfg.seed, answer=cfg.answer,
                       split_seed=cfg.eval.split_seed)
    answer = out["data"]["answer"]
    assert answer["ship"] == chosen["name"] and answer["sentences"][0] == chosen["why"]
    assert summary["decision"]["choice"] == chosen["name"]
    if chosen["frontier_candidate"]:  # a chosen candidate is scored once, on test items only
        test = json.loads((run.root / chosen["test_eval"]).read_text())
        assert all(split.part(t, it["doc_id"]) == "test" for t, r in test["tasks"].items()
                   for it in r["items"])
    else:
        assert chosen["test_eval"] is None
    # export: a loadable standard model equal to the candidate merged afresh
    name = "linear_x1"
    dest = export_candidate(cfg, run, name, **QUIET)
    spec = next(c for c in build_grid(cfg, 3) if c.name == name)
    merge_candidate(FrontierContext.open(cfg, run, **QUIET), spec, tmp_path / "fresh")
    exported, fresh = _weights(dest), _weights(tmp_path / "fresh")
    assert all(torch.equal(exported[n], fresh[n]) for n in fresh)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(dest)
    assert torch.equal(model.state_dict()["model.embed_tokens.weight"],
                       fresh["model.embed_tokens.weight"])
    with pytest.raises(ConfigError, match="--overwrite"):
        export_candidate(cfg, run, name, **QUIET)
    export_candidate(cfg, run, name, overwrite=True, **QUIET)
    with pytest.raises(ConfigError, match="no such candidate"):
        export_candidate(cfg, run, "lnear_x1", **QUIET)
    # the report's frontier section: every candidate on validation items, on both planes
    md = open(out["markdown"]).read()
    frontier = md.split("## Frontier")[1].split("\n## ")[0]
    assert "VALIDATION items" in frontier and "beat the train-less line" in frontier
    if any(c["validation"] for c in summary["candidates"]):
        assert "fr_roll (val, lower is better)" in frontier and "beats the line" in frontier
    if any(c["first_pass"].startswith("left out") for c in summary["candidates"]):
        assert "Left out by the first pass" in frontier and "beyond noise" in frontier
    assert chosen["why"] in frontier


def test_a_killed_frontier_resumes_without_rescoring(evaluated_run, tmp_path, monkeypatch):
    import dtmerge.evaluate.harness as harness

    cfg, run = copy_run(*evaluated_run, tmp_path)
    real = harness.evaluate_model
    scored: list[str] = []

    def killed_after_three(model, eval_cfg, out, variant, **kw):
        if len(scored) == 3:
            raise KeyboardInterrupt  # the user's Ctrl-C mid-grid
        scored.append(out.name)
        return real(model, eval_cfg, out, variant, **kw)

    monkeypatch.setattr(harness, "evaluate_model", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        frontier_stage(cfg, run, **QUIET)
    first = list(scored)
    assert len(first) == 3 and not (run.root / "frontier/frontier.json").exists()

    again: list[str] = []

    def counting(model, eval_cfg, out, variant, **kw):
        again.append(out.name)
        return real(model, eval_cfg, out, variant, **kw)

    monkeypatch.setattr(harness, "evaluate_model", counting)
    summary = frontier_stage(cfg, run, **QUIET)
    assert not set(first) & set(again), "a finished candidate was scored again"
    assert len(again) >= 3 and summary["chosen"]["name"]
    assert not list((run.root / "frontier" / "cache").glob("*"))  # scored models deleted
    again.clear()
    frontier_stage(cfg, run, **QUIET)  # everything done: nothing scored
    assert again == []


def test_cli_frontier_and_export(evaluated_run, tmp_path, capsys):
    from dtmerge.cli.main import main

    cfg, run = copy_run(*evaluated_run, tmp_path)
    assert main(["frontier", str(run.root), "eval.validation_fraction=null"]) == 2
    assert "eval.validation_fraction" in capsys.readouterr().err
    one = ["frontier.methods=[linear]", "frontier.scales=[1.5]", "frontier.prune_fraction=null"]
    assert main(["frontier", str(run.root), *one]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((run.root / "frontier/frontier.json").read_text())
    assert summary["chosen"]["why"] in printed  # the CLI prints the decision's own sentence
    assert main(["frontier", str(run.root), *one, "--export", "linear_x1.5"]) == 0
    assert (run.model("frontier_linear_x1.5") / "config.json").is_file()
    assert main(["frontier", str(run.root), *one, "--export", "linear_x1.5"]) == 2
    assert "--overwrite" in capsys.readouterr().err

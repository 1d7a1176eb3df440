"""Language-modelling loss tasks (loglikelihood_rolling) scored end to end on a tiny model:
direction, ratio-of-sums aggregation, per-document parts, bootstrap intervals, and reuse of
finished task results when a task is added to eval.tasks."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dtmerge.config import EvalConfig, RunConfig
from dtmerge.evaluate.harness import evaluate_model
from dtmerge.evaluate.lm_loss import item_parts, ratio_value
from dtmerge.evaluate.stage import evaluate_stage
from dtmerge.rundir import RunDir


@pytest.fixture(scope="module")
def rolling_result(tiny_model_dir, rolling_task_dir, tmp_path_factory):
    torch.set_num_threads(1)
    cfg = EvalConfig(tasks=["tiny_roll", "tiny_mc"], include_path=[str(rolling_task_dir)],
                     device="cpu", batch_size=4)
    out = tmp_path_factory.mktemp("lm") / "base.json"
    return evaluate_model(tiny_model_dir, cfg, out, "base"), out


def test_rolling_task_records_direction_parts_and_ratio_of_sums(rolling_result):
    result, out = rolling_result
    roll = result["tasks"]["tiny_roll"]
    assert roll["metric"] == "bits_per_byte" and roll["higher_is_better"] is False
    assert roll["aggregation"] == "ratio_of_sums" and roll["n"] == 6
    items = roll["items"]
    assert all(it["bytes"] > 0 and it["words"] > 0 and it["loglikelihood"] < 0 for it in items)
    # lm-eval's bits_per_byte is total NLL over total bytes, which our parts reproduce ...
    total_nll = -sum(it["loglikelihood"] for it in items)
    total_bytes = sum(it["bytes"] for it in items)
    assert roll["score"] == pytest.approx(total_nll / total_bytes / math.log(2), rel=1e-9)
    parts = [item_parts(it, "bits_per_byte") for it in items]
    assert ratio_value("bits_per_byte", *zip(*parts)) == pytest.approx(roll["score"], rel=1e-9)
    # ... and which is not the mean of the per-document values (documents differ in length)
    per_doc = [it["score"] for it in items]
    assert sum(per_doc) / len(per_doc) != pytest.approx(roll["score"], rel=1e-6)
    assert roll["metrics"]["byte_perplexity"] == pytest.approx(
        math.exp(total_nll / total_bytes), rel=1e-9)
    low, high = roll["interval"]
    assert low < roll["score"] < high and roll["stderr"] > 0
    # the multiple-choice task next to it keeps its higher-is-better mean
    mc = result["tasks"]["tiny_mc"]
    assert mc["metric"] == "acc" and mc["higher_is_better"] is True
    assert mc["aggregation"] == "mean"
    assert json.loads(out.read_text())["tasks"]["tiny_roll"]["higher_is_better"] is False


def test_rolling_scores_do_not_depend_on_the_batch_size(rolling_result, tiny_model_dir,
                                                        rolling_task_dir, tmp_path):
    """The Gemma run scored some variants at batch 16 and one at batch 1 (the logits cap):
    per-document log-likelihoods must agree, so the variants stay comparable."""
    result, _ = rolling_result  # batch 4
    cfg = EvalConfig(tasks=["tiny_roll"], include_path=[str(rolling_task_dir)], device="cpu",
                     batch_size=1)
    single = evaluate_model(tiny_model_dir, cfg, tmp_path / "b1.json", "base")
    by_doc = {it["doc_id"]: it["loglikelihood"] for it in result["tasks"]["tiny_roll"]["items"]}
    for it in single["tasks"]["tiny_roll"]["items"]:
        assert it["loglikelihood"] == pytest.approx(by_doc[it["doc_id"]], rel=1e-4, abs=1e-4)
    assert single["tasks"]["tiny_roll"]["score"] == pytest.approx(
        result["tasks"]["tiny_roll"]["score"], rel=1e-5)


def test_report_reads_rolling_results(rolling_result, tmp_path):
    from dtmerge.results.records import load_eval_file

    _, out = rolling_result
    r = load_eval_file(out).tasks["tiny_roll"]
    assert r.higher_is_better is False and r.metric == "bits_per_byte"
    assert len(r.parts) == 6 and all(den > 0 for _, den in r.parts.values())


@pytest.fixture
def roll_run(tmp_path, tiny_model_dir, rolling_task_dir):
    torch.set_num_threads(1)
    cfg = RunConfig.model_validate({
        "name": "r", "runs_dir": str(tmp_path / "runs"),
        "model": {"path": str(tiny_model_dir)}, "data": {"path": "unused.jsonl"},
        "eval": {"tasks": ["tiny_mc"], "include_path": [str(rolling_task_dir)],
                 "variants": ["base"], "batch_size": 4, "device": "cpu"},
    })
    run = RunDir(cfg.run_dir)
    return cfg, run


def _with_eval(cfg: RunConfig, **update) -> RunConfig:
    return cfg.model_copy(update={"eval": cfg.eval.model_copy(update=update)})


def test_adding_a_task_scores_only_that_task(roll_run):
    cfg, run = roll_run
    evaluate_stage(cfg, run, log=lambda *_: None)
    first = json.loads(run.eval_file("base").read_text())
    logs: list[str] = []
    out = evaluate_stage(_with_eval(cfg, tasks=["tiny_mc", "tiny_roll"]), run, log=logs.append)
    assert out["ran"] == ["base"]
    assert run.job("eval:base")["reused"] == ["tiny_mc"]
    assert any("reusing tiny_mc" in m and "scoring tiny_roll" in m for m in logs)
    second = json.loads(run.eval_file("base").read_text())
    assert list(second["tasks"]) == ["tiny_mc", "tiny_roll"]
    assert second["tasks"]["tiny_mc"] == first["tasks"]["tiny_mc"]
    assert set(second["settings"]["task_versions"]) == {"tiny_mc", "tiny_roll"}
    # the same config again is a skip; another setting (limit) scores everything again
    again = evaluate_stage(_with_eval(cfg, tasks=["tiny_mc", "tiny_roll"]), run, log=logs.append)
    assert again["ran"] == []
    evaluate_stage(_with_eval(cfg, tasks=["tiny_mc", "tiny_roll"], limit=3), run, log=logs.append)
    assert run.job("eval:base")["reused"] == []
    third = json.loads(run.eval_file("base").read_text())
    assert third["tasks"]["tiny_roll"]["n"] == 3 and third["tasks"]["tiny_mc"]["n"] == 3


def test_rolling_batch_is_bounded_by_logits_memory():
    from types import SimpleNamespace

    from dtmerge.evaluate.harness import LOGITS_BUDGET_BYTES, rolling_batch_size

    def fake_lm(vocab, batch, max_length):
        head = SimpleNamespace(weight=torch.empty(vocab, 0))
        model = SimpleNamespace(get_output_embeddings=lambda: head)
        return SimpleNamespace(batch_size_per_gpu=batch, max_length=max_length, model=model)

    # Gemma-3's 262k vocabulary: 16 whole documents at once would need tens of GB of logits
    assert rolling_batch_size(fake_lm(262_144, 16, 32_768)) == 1
    assert rolling_batch_size(fake_lm(300, 16, 256)) == 16  # a small model keeps its batch
    mid = rolling_batch_size(fake_lm(32_000, 16, 4096))
    assert 1 <= mid < 16 and 2 * 2048 * 32_000 * 4 * mid <= LOGITS_BUDGET_BYTES
    assert rolling_batch_size(fake_lm(300, "auto", 256)) is None


def test_rolling_batch_is_recorded(rolling_result):
    result, _ = rolling_result
    assert result["settings"]["rolling_batch_size"] == 4  # the tiny model keeps eval.batch_size

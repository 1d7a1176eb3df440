"""A best checkpoint whose step is its job's last is the final model: not a variant of its own."""

import json

from dtmerge.evaluate.stage import best_is_final
from dtmerge.rundir import RunDir


def _run(tmp_path, best_step: int, final_steps: int) -> RunDir:
    run = RunDir(tmp_path / "r")
    best = run.model("sft_best")
    best.mkdir(parents=True)
    (best / "best.json").write_text(json.dumps({"step": best_step, "score": 1.0,
                                                "by": "heldout_loss"}))
    run.update_job("train:sft", status="done", steps=final_steps)
    return run


def test_best_at_the_last_step_is_said_to_be_the_final_model(tmp_path):
    run = _run(tmp_path, 492, 492)
    why = best_is_final(run, run.model("sft_best"))
    assert why and "492 of 492" in why and "same weights as sft" in why


def test_an_earlier_best_step_is_a_variant(tmp_path):
    run = _run(tmp_path, 200, 492)
    assert best_is_final(run, run.model("sft_best")) is None

"""Task-by-task reuse of finished evaluations (no model needed: files and fingerprints)."""

from __future__ import annotations

import json

from dtmerge.evaluate.reuse import merge_results, reusable_results, settings_variants
from dtmerge.rundir import hash_obj

DEFAULTS = {"limit": None, "allow_code_execution": False, "batch_size": 16}


def _fps(settings: dict, model: str = "m1"):
    def fingerprints_for(tasks):
        for s in settings_variants(dict(settings, tasks=tasks), DEFAULTS):
            yield hash_obj({"eval": s, "model": model})
    return fingerprints_for


def _previous(tmp_path, settings: dict, tasks: list[str], status: str = "done"):
    out = tmp_path / "base.json"
    out.write_text(json.dumps({"variant": "base", "settings": {"task_versions": {t: 1 for t in tasks}},
                               "tasks": {t: {"score": 0.5, "metric": "acc"} for t in tasks}}))
    job = {"status": status, "fingerprint": hash_obj({"eval": dict(settings, tasks=tasks),
                                                      "model": "m1"})}
    return out, job


def test_same_settings_reuse_the_tasks_already_scored(tmp_path):
    settings = {"limit": 60, "batch_size": 16, "allow_code_execution": False}
    out, job = _previous(tmp_path, settings, ["a", "b"])
    assert set(reusable_results(out, job, _fps(settings), ["a", "b", "c"])) == {"a", "b"}
    # a different setting, model, or an unfinished job: nothing is reused
    assert reusable_results(out, job, _fps(dict(settings, limit=10)), ["a", "c"]) == {}
    assert reusable_results(out, job, _fps(settings, model="m2"), ["a", "c"]) == {}
    _, running = _previous(tmp_path, settings, ["a", "b"], status="running")
    assert reusable_results(out, running, _fps(settings), ["a", "c"]) == {}


def test_a_key_added_later_at_its_default_does_not_block_reuse(tmp_path):
    old = {"limit": 60, "batch_size": 16}  # written before allow_code_execution existed
    out, job = _previous(tmp_path, old, ["a"])
    now = dict(old, allow_code_execution=False)
    assert set(reusable_results(out, job, _fps(now), ["a", "c"])) == {"a"}
    # the same key at a non-default value is a different evaluation
    assert reusable_results(out, job, _fps(dict(old, allow_code_execution=True)), ["a"]) == {}


def test_merge_keeps_task_order_and_versions(tmp_path):
    settings = {"limit": 60}
    out, _ = _previous(tmp_path, settings, ["a", "b"])
    fresh = {"variant": "base", "settings": {"task_versions": {"c": 2}}, "tasks": {"c": {"score": 1.0}}}
    reused = {"a": {"score": 0.5}}
    merged = merge_results(out, fresh, reused, ["c", "a"])
    assert list(merged["tasks"]) == ["c", "a"]
    assert merged["settings"]["task_versions"] == {"a": 1, "c": 2}

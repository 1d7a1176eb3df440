"""The disperse stage on a run directory: portions, summary.json, errors, resume."""

import json

import pytest

from dtmerge.config import RunConfig
from dtmerge.data import read_jsonl, write_jsonl
from dtmerge.disperse import disperse_portions
from dtmerge.errors import DataError
from dtmerge.rundir import RunDir

TOPICS = {
    "cooking": "bake the cake with butter flour sugar eggs in the oven",
    "code": "python function returns list loop dictionary variable",
}


def make_run(tmp_path, n_per_topic=10, **disperse):
    cfg = RunConfig(name="t", runs_dir=str(tmp_path / "runs"), model={"path": "unused"},
                    data={"path": "unused.jsonl"}, disperse=disperse)
    run = RunDir(cfg.run_dir)
    records = []
    for i in range(n_per_topic):
        for source, text in TOPICS.items():
            records.append({"prompt": [{"role": "user", "content": f"Tell me #{i}"}],
                            "completion": [{"role": "assistant", "content": f"{text} {i}"}],
                            "source": source})
    write_jsonl(run.all_data, records)
    return cfg, run, records


def test_random_stage_writes_portions_and_summary(tmp_path):
    cfg, run, records = make_run(tmp_path, strategy="random", num_portions=4)
    summary = disperse_portions(cfg, run, log=lambda _: None)
    portions = [read_jsonl(run.portion("dtm", k)) for k in range(4)]
    assert sorted(len(p) for p in portions) == [5, 5, 5, 5]
    key = lambda r: (r["completion"][0]["content"], r["source"])  # noqa: E731
    assert sorted(key(r) for p in portions for r in p) == sorted(key(r) for r in records)
    on_disk = json.loads((run.data_dir / "summary.json").read_text())
    assert on_disk == summary and summary["total"] == 20 and summary["strategy"] == "random"
    for k, entry in enumerate(summary["portions"]):
        assert entry["size"] == len(portions[k])
        assert abs(sum(entry["sources"].values()) - 1) < 1e-6
        assert 0 < len(entry["distinctive_terms"]) <= 8


def test_field_stage_summary_shows_pure_sources_and_distinctive_terms(tmp_path):
    cfg, run, _ = make_run(tmp_path, strategy="field", field="source", num_portions=2)
    summary = disperse_portions(cfg, run, log=lambda _: None)
    by_source = {next(iter(p["sources"])): p for p in summary["portions"]}
    assert by_source["code"]["sources"] == {"code": 1.0}
    assert "python" in by_source["code"]["distinctive_terms"]
    assert "oven" in by_source["cooking"]["distinctive_terms"]
    assert "python" not in by_source["cooking"]["distinctive_terms"]


def test_kmeans_stage_recovers_topics(tmp_path):
    cfg, run, _ = make_run(tmp_path, strategy="kmeans", num_portions=2)
    summary = disperse_portions(cfg, run, log=lambda _: None)
    assert summary["encoder"] == "tfidf" and summary["embed_on"] == "response"
    assert sorted(len(p["sources"]) for p in summary["portions"]) == [1, 1]


def test_k_larger_than_data_is_an_error(tmp_path):
    cfg, run, _ = make_run(tmp_path, n_per_topic=1, num_portions=3)
    with pytest.raises(DataError, match="num_portions=3.*only 2 examples"):
        disperse_portions(cfg, run, log=lambda _: None)


def test_empty_portion_is_an_error(tmp_path):
    # Two distinct texts cannot fill three clusters.
    cfg, run, _ = make_run(tmp_path, strategy="kmeans", num_portions=3)
    records = read_jsonl(run.all_data)
    for r in records:
        r["completion"][0]["content"] = TOPICS[r["source"]]
    write_jsonl(run.all_data, records)
    with pytest.raises(DataError, match="empty"):
        disperse_portions(cfg, run, log=lambda _: None)


def test_rerun_skips_then_redoes_when_k_changes_and_removes_stale_portions(tmp_path):
    cfg, run, _ = make_run(tmp_path, num_portions=4)
    disperse_portions(cfg, run, log=lambda _: None)
    logs = []
    disperse_portions(cfg, run, log=logs.append)
    assert any("[skip] disperse" in line for line in logs)
    smaller = cfg.model_copy(update={"disperse": cfg.disperse.model_copy(update={"num_portions": 2})})
    disperse_portions(smaller, run, log=lambda _: None)
    assert sorted(p.name for p in run.data_dir.glob("portion_*.jsonl")) == [
        "portion_0.jsonl", "portion_1.jsonl"]


def test_missing_all_jsonl_says_run_data_first(tmp_path):
    cfg = RunConfig(name="t", runs_dir=str(tmp_path), model={"path": "m"}, data={"path": "d.jsonl"})
    with pytest.raises(DataError, match="data stage first"):
        disperse_portions(cfg, RunDir(cfg.run_dir), log=lambda _: None)

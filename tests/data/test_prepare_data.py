"""The data stage end to end on a run directory."""

import json

import pytest

from dtmerge.config import RunConfig
from dtmerge.data import prepare_data, read_jsonl
from dtmerge.errors import DataError
from dtmerge.rundir import RunDir


def make_cfg(tmp_path, data_path, **data):
    return RunConfig(name="t", runs_dir=str(tmp_path / "runs"), model={"path": "unused"},
                     data={"path": str(data_path), **data})


def write_alpaca(path, n, empty_every=0):
    rows = [{"instruction": f"q{i}", "input": "", "source": f"s{i % 2}",
             "output": "" if empty_every and i % empty_every == 0 else f"a{i}"} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_prepare_normalises_drops_caps_and_splits(tmp_path):
    src = tmp_path / "d.jsonl"
    write_alpaca(src, 50, empty_every=10)  # 5 empty responses
    cfg = make_cfg(tmp_path, src, max_examples=40, eval_fraction=0.1)
    run = RunDir(cfg.run_dir)
    logs = []
    summary = prepare_data(cfg, run, log=logs.append)
    assert summary["format"] == "alpaca" and summary["dropped_empty"] == 5
    assert summary["kept"] == 45 and summary["train"] == 36 and summary["heldout"] == 4
    assert any("dropped 5" in line for line in logs)
    train, held = read_jsonl(run.all_data), read_jsonl(run.heldout_data)
    assert len(train) == 36 and len(held) == 4
    prompts = {r["prompt"][0]["content"] for r in train + held}
    assert len(prompts) == 40  # disjoint
    assert all(r["completion"][0]["role"] == "assistant" and "source" in r for r in train)


def test_prepare_is_deterministic_skips_when_unchanged_and_redoes_on_change(tmp_path):
    src = tmp_path / "d.jsonl"
    write_alpaca(src, 30)
    cfg = make_cfg(tmp_path, src)
    run = RunDir(cfg.run_dir)
    prepare_data(cfg, run, log=lambda _: None)
    first = run.all_data.read_text()
    logs = []
    prepare_data(cfg, run, log=logs.append)
    assert any("[skip] data" in line for line in logs)
    run.all_data.unlink()
    prepare_data(cfg, run, log=lambda _: None)  # deleted output is rebuilt, identically
    assert run.all_data.read_text() == first
    write_alpaca(src, 31)  # input changed -> redone
    logs = []
    assert prepare_data(cfg, run, log=logs.append)["records_read"] == 31
    assert any("[redo] data" in line for line in logs)


def test_empty_data_set_is_an_error(tmp_path):
    src = tmp_path / "empty.jsonl"
    src.write_text("\n")
    cfg = make_cfg(tmp_path, src)
    with pytest.raises(DataError, match="empty"):
        prepare_data(cfg, RunDir(cfg.run_dir), log=lambda _: None)
    write_alpaca(src, 4, empty_every=1)  # every response empty
    with pytest.raises(DataError, match="all 4 examples"):
        prepare_data(cfg, RunDir(cfg.run_dir), log=lambda _: None)


def test_record_that_breaks_the_format_is_located(tmp_path):
    src = tmp_path / "mixed.jsonl"
    src.write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n"
                   + json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    cfg = make_cfg(tmp_path, src)
    with pytest.raises(DataError, match="example 2.*instruction"):
        prepare_data(cfg, RunDir(cfg.run_dir), log=lambda _: None)

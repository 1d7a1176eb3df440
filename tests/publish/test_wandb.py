"""W&B beside MLflow, in W&B's offline mode (WANDB_MODE=offline, files under tmp): the run's
config, scores, tax and tax table on one run, a run per trained model with its curves, all in
the group named after the dtmerge run; checked in the files wandb writes."""

import json
import sys

import pytest

from dtmerge.config import RunConfig
from dtmerge.errors import DtmError
from dtmerge.report.tracking import log_run_wandb
from dtmerge.rundir import RunDir

from report_fixtures import make_run
from wandb_records import read_offline_run


def _cfg(root, **tracking):
    return RunConfig(name=root.name, runs_dir=str(root.parent), model={"path": "m"},
                     data={"path": "d"}, tracking={"wandb": True, **tracking})


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-files"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    for name in ("WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_ENTITY"):  # restored afterwards:
        monkeypatch.setenv(name, "unset")  # training jobs set them in os.environ
        monkeypatch.delenv(name)
    (tmp_path / "wandb-files").mkdir()
    yield tmp_path / "wandb-files" / "wandb"
    import wandb

    wandb.teardown()  # wandb keeps its first settings (WANDB_DIR) for the process otherwise


def _offline_run(wandb_root, run_id):
    [run_dir] = wandb_root.glob(f"offline-run-*-{run_id}")
    return run_dir, read_offline_run(run_dir)


def test_missing_wandb_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail
    root = make_run(tmp_path / "runs" / "demo", with_extras=False)
    with pytest.raises(DtmError, match=r"pip install 'dtmerge\[wandb\]'"):
        log_run_wandb(_cfg(root), RunDir(root))


def test_logs_the_run_and_each_trained_model_offline(tmp_path, offline_wandb):
    from dtmerge.report.stage import write_report

    root = make_run(tmp_path / "runs" / "demo")
    run = RunDir(root)
    write_report(run, ["facts", "science", "arith"], ["follow"], n_boot=200)
    report = json.loads((root / "report" / "report.json").read_text())
    ids = log_run_wandb(_cfg(root, wandb_project="tax-study"), run)
    assert ids["project"] == "tax-study" and ids["group"] == "demo"
    assert not (tmp_path / "wandb").exists()  # under WANDB_DIR only

    run_dir, parent = _offline_run(offline_wandb, ids["parent_run_id"])
    assert (parent.project, parent.group, parent.job_type) == ("tax-study", "demo", "run")
    assert parent.config["train"]["learning_rate"] == pytest.approx(3e-4)
    assert parent.summary["dtm/facts"] == pytest.approx(report["scores"]["dtm"]["facts"])
    assert parent.summary["tax/sft/facts"] == pytest.approx(report["tax"]["facts"]["sft"])
    [table_file] = (run_dir / "files" / "media" / "table").glob("tax_table_*.table.json")
    table = json.loads(table_file.read_text())
    rows = {(r[0], r[1]): r for r in table["data"]}
    facts = report["tax_intervals"]["facts"]["dtm"]
    assert rows[("dtm", "facts")][2:5] == pytest.approx(
        [report["tax"]["facts"]["dtm"], facts["low"], facts["high"]])
    assert rows[("dtm", "facts")][5] == pytest.approx(report["dtm_vs_sft"]["dtm"]["facts"]["mean"])

    assert set(ids["child_run_ids"]) == {"sub_0", "sub_1", "sft"}
    _, child = _offline_run(offline_wandb, ids["child_run_ids"]["sub_0"])
    assert (child.group, child.job_type) == ("demo", "train")
    assert child.config["dtmerge.parent_run"] == ids["parent_run_id"]
    assert [h["_step"] for h in child.history] == [0, 20, 40, 60, 80, 100]
    assert max(h["probe_acc"] for h in child.history) == pytest.approx(0.7)
    assert child.summary["train_seconds"] == pytest.approx(65.0)


def test_training_jobs_stream_curves_to_their_own_runs(tmp_path, tiny_model_dir, offline_wandb):
    """Two jobs in one process (the local executor): one W&B run each, named after the job,
    grouped under the dtmerge run; the second job never logs into the first one's run."""
    import torch

    from dtmerge.config import config_from_dict
    from dtmerge.train import train_model

    torch.set_num_threads(1)
    cfg = config_from_dict({
        "name": "live", "runs_dir": str(tmp_path / "runs"), "model": {"path": str(tiny_model_dir)},
        "data": {"path": "unused.jsonl"}, "tracking": {"wandb": True},
        "train": {"max_steps": 3, "batch_size": 2, "grad_accum": 1, "warmup_steps": 0,
                  "logging_steps": 1, "save_steps": 100}})
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"where {i}"}],
                                        "completion": [{"role": "assistant", "content": "paris"}]})
                            + "\n" for i in range(6)))
    for job in ("sub_0", "sub_1"):
        train_model(cfg, data, tmp_path / "runs" / "live" / "models" / job, job, fingerprint="f")
    runs = [read_offline_run(d) for d in sorted(offline_wandb.glob("offline-run-*"))]
    assert len(runs) == 2
    assert sorted(r.config.get("run_name") for r in runs) == ["sub_0", "sub_1"]
    for r in runs:
        assert (r.project, r.group) == ("dtmerge", "live")
        losses = [h["train/loss"] for h in r.history if "train/loss" in h]
        assert len(losses) == 3  # logging_steps=1, max_steps=3: this job's steps only

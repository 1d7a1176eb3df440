"""MLflow logging: a parent run with params and metrics, a child run per trained model."""

import sys

import pytest

from dtmerge.config import RunConfig
from dtmerge.errors import DtmError
from dtmerge.rundir import RunDir
from dtmerge.report.tracking import flatten_params, log_run


def _cfg(root):
    return RunConfig(name=root.name, runs_dir=str(root.parent), model={"path": "m"},
                     data={"path": "d"}, tracking={"mlflow": True})


def test_missing_mlflow_is_a_clear_error(run_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # makes `import mlflow` fail
    with pytest.raises(DtmError, match=r"pip install 'dtmerge\[mlflow\]'"):
        log_run(_cfg(run_root), RunDir(run_root))


def test_flatten_params():
    assert flatten_params({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": "1", "a.c": "[1, 2]", "d": "None"}


@pytest.mark.slow
def test_logs_parent_and_children_to_sqlite_in_the_run_dir(run_root, monkeypatch, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    pytest.importorskip("sqlalchemy", reason="MLflow's sqlite store needs sqlalchemy")
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    ids = log_run(_cfg(run_root), RunDir(run_root))
    assert ids["tracking_uri"] == f"sqlite:///{(run_root / 'mlflow.db').resolve()}"
    assert (run_root / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    client = mlflow.MlflowClient(tracking_uri=ids["tracking_uri"])
    parent = client.get_run(ids["parent_run_id"])
    assert parent.data.params["train.learning_rate"] == "0.0003"
    assert parent.data.metrics["dtm/facts"] == pytest.approx(
        __import__("json").loads((run_root / "eval/dtm.json").read_text())["tasks"]["facts"]["score"])
    assert "tax/sft/facts" in parent.data.metrics
    assert set(ids["child_run_ids"]) == {"sub_0", "sub_1", "sft"}
    child = client.get_run(ids["child_run_ids"]["sub_0"])
    assert child.data.tags["mlflow.parentRunId"] == ids["parent_run_id"]
    history = client.get_metric_history(child.info.run_id, "probe_acc")
    assert [m.step for m in history] == [0, 20, 40, 60, 80, 100]
    assert max(m.value for m in history) == pytest.approx(0.7)

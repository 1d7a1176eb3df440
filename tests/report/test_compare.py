"""`dtm compare`: exit 1 on a planted regression, 0 on identical results, 2 on usage errors."""

import json
import shutil

import numpy as np
import pytest

from dtmerge.cli.main import main
from dtmerge.report.compare import compare_results, load_eval_config
from dtmerge.results.records import load_eval_file
from report_fixtures import write_eval


def _two_runs(tmp_path, drop: float, tolerance_task_drop: float = 0.0):
    rng = np.random.default_rng(0)
    a = {"facts": (rng.random(300) < 0.7).astype(float), "follow": (rng.random(300) < 0.5).astype(float)}
    b = {k: v.copy() for k, v in a.items()}
    wrong = rng.choice(np.flatnonzero(b["facts"] == 1), int(drop * 300), replace=False)
    b["facts"][wrong] = 0.0  # planted: B forgets `drop` of the facts
    for name, scores in (("A", a), ("B", b)):
        write_eval(tmp_path / name, "dtm", {"facts": ("knowledge", scores["facts"]),
                                             "follow": ("instruction", scores["follow"])})
        (tmp_path / name / "manifest.json").write_text('{"jobs": {}}')
    return tmp_path / "A", tmp_path / "B"


def test_planted_regression_fails_the_gate(tmp_path, capsys):
    a, b = _two_runs(tmp_path, drop=0.1)
    out = tmp_path / "cmp.json"
    assert main(["compare", str(a), str(b), "--json", str(out), "--bootstrap", "500"]) == 1
    captured = capsys.readouterr()
    assert "REGRESSION" in captured.out and "facts" in captured.err
    data = json.loads(out.read_text())
    assert data["regressions"] == ["facts"]
    assert data["benchmarks"]["facts"]["mean"] == pytest.approx(-0.1)
    assert data["benchmarks"]["follow"]["verdict"] == "no significant change"
    # a tolerance larger than the drop lets it pass
    assert main(["compare", str(a), str(b), "--tolerance", "0.15", "--bootstrap", "500"]) == 0


def test_identical_results_pass(tmp_path, capsys):
    a, _ = _two_runs(tmp_path, drop=0.0)
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    assert main(["compare", str(a), str(copy), "--bootstrap", "300"]) == 0
    assert "OK" in capsys.readouterr().out
    # eval JSON files work as well as run directories
    assert main(["compare", str(a / "eval/dtm.json"), str(copy / "eval/dtm.json")]) == 0


def test_usage_errors_exit_2(tmp_path, capsys):
    a, b = _two_runs(tmp_path, drop=0.0)
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert main(["compare", str(a), str(b), "--variant", "sft"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "no eval/sft.json (has: dtm)" in err
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert main(["compare", str(a), str(model)]) == 2
    assert "--eval-config" in capsys.readouterr().err


def test_no_shared_benchmark_and_eval_config_forms(tmp_path):
    write_eval(tmp_path, "x", {"t1": ("knowledge", [1.0, 0.0])})
    write_eval(tmp_path, "y", {"t2": ("knowledge", [1.0, 0.0])})
    with pytest.raises(Exception, match="share no benchmark"):
        compare_results(load_eval_file(tmp_path / "eval/x.json"), load_eval_file(tmp_path / "eval/y.json"))
    bare = tmp_path / "eval.yaml"
    bare.write_text("tasks: [facts]\nnum_fewshot: 0\n")
    assert load_eval_config(bare).tasks == ["facts"]
    bare.write_text("eval:\n  tasks: [facts]\n  bogus: 1\n")
    with pytest.raises(Exception, match="unknown key 'bogus'"):
        load_eval_config(bare)

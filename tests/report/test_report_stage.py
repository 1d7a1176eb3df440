"""report_stage on a synthetic run directory: outputs, content, skip and redo."""

import json

import pytest

from dtmerge.config import RunConfig
from dtmerge.report import report_stage, write_report
from dtmerge.results.records import ReportError
from dtmerge.rundir import RunDir
from report_fixtures import write_eval


def _cfg(root, **report):
    return RunConfig(name=root.name, runs_dir=str(root.parent), model={"path": "unused"},
                     data={"path": "unused"}, report={"bootstrap_samples": 300, **report})


def test_writes_markdown_html_and_prints_the_summary(run_root):
    logged = []
    out = report_stage(_cfg(run_root), RunDir(run_root), log=logged.append)
    md = open(out["markdown"]).read()
    html = open(out["html"]).read()
    for heading in ("Scores and alignment tax", "DTM against plain SFT", "Trade-off",
                    "Error sets", "Bias of the instruction data", "Training monitor", "Run timings"):
        assert heading in md and heading in html
    for variant in ("base", "sft", "dtm", "sub_0", "sub_2", "interp_0.5"):
        assert f"| {variant} |" in md
    # plots embedded in the HTML, linked from the markdown
    assert html.count('src="data:image/png;base64,') == 3
    assert "](plots/tradeoff.png)" in md and (run_root / "report/plots/tradeoff.png").exists()
    assert "Answer-position bias" in md and "A (+0.30)" in md and "B (+0.05)" in md
    assert "'sure here is'" in md and "'Certainly'*" in md  # boilerplate and rare tokens
    assert "<script" not in html and "http" not in html  # standalone: no external asset
    assert "dtm−sft" in out["summary"] and "facts" in out["summary"]
    assert any("report.html" in line for line in logged)
    data = json.loads((run_root / "report/report.json").read_text())
    assert set(data["dtm_vs_sft"]["dtm"]) == {"facts", "science", "arith", "follow"}
    assert data["tradeoff"]["line"] == ["base", "interp_0.5", "sft"]
    assert "dtm" in data["tradeoff"]["verdicts"]
    assert data["error_sets"]["sub_models"] == ["sub_0", "sub_1", "sub_2"]
    assert RunDir(run_root).job("report")["status"] == "done"


def test_rerun_skips_and_a_changed_eval_file_redoes(run_root):
    cfg, run = _cfg(run_root), RunDir(run_root)
    report_stage(cfg, run, log=lambda *_: None)
    logged = []
    out = report_stage(cfg, run, log=logged.append)
    assert any(line.startswith("[skip] report") for line in logged)
    assert "dtm−sft" in out["summary"]  # summary still returned, from summary.txt
    write_eval(run_root, "dtm_long", {"facts": ("knowledge", [1.0, 0.0, 1.0])})
    logged = []
    report_stage(cfg, run, log=logged.append)
    assert any(line.startswith("[redo] report") for line in logged)
    assert "dtm_long" in (run_root / "report/report.md").read_text()


def test_a_report_written_by_other_report_code_is_rewritten(run_root, monkeypatch):
    import dtmerge.report.stage as stage

    cfg, run = _cfg(run_root), RunDir(run_root)
    report_stage(cfg, run, log=lambda *_: None)
    monkeypatch.setattr(stage, "report_code", lambda: "a newer dtmerge")
    logged = []
    report_stage(cfg, run, log=logged.append)
    assert any(line.startswith("[redo] report") for line in logged)


def test_dtm_below_the_line_is_said_plainly(tmp_path):
    root = tmp_path / "r"
    # knowledge, instruction per variant: DTM sits under the base->SFT line
    for name, (k, i) in {"base": (0.8, 0.0), "sft": (0.4, 1.0), "dtm": (0.3, 0.5)}.items():
        write_eval(root, name, {"k": ("knowledge", [1.0] * int(k * 10) + [0.0] * (10 - int(k * 10))),
                                "i": ("instruction", [1.0] * int(i * 10) + [0.0] * (10 - int(i * 10)))})
    out = write_report(RunDir(root), n_boot=200)
    md = open(out["markdown"]).read()
    # base and SFT alone are a chord, not a line to beat: no verdict, and it says why
    assert "dtm lies 0.300 below" not in md
    assert "it has 2 measured point(s); 3 are needed" in md


def test_no_results_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="run `dtm eval`"):
        write_report(RunDir(tmp_path))

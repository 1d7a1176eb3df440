"""`dtm watch --once` prints one frame of jobs, progress and monitor curves."""

from dtmerge.cli.main import main
from dtmerge.report.watch import progress_bar, render_frame, sparkline
from dtmerge.rundir import RunDir


def test_once_prints_jobs_progress_and_curves(run_root, capsys):
    assert main(["watch", str(run_root), "--once"]) == 0
    frame = capsys.readouterr().out
    assert "train:sub_1" in frame and "running" in frame
    assert "30/120" in frame and "loss 1.2340" in frame  # progress.json of the running job
    assert "TrainingError: NaN loss" in frame  # the failed job says why
    assert "1m05s" in frame
    eval_line = next(line for line in frame.splitlines() if line.startswith("eval:sub_1"))
    assert "30/120" not in eval_line  # only training jobs show training progress
    assert "sub_0" in frame and "▂█▇▅▂▁" in frame  # probe-acc sparkline
    assert "probe fell below its peak" in frame  # last alert from the monitor summary
    assert "\x1b[" not in frame  # no ANSI codes when not a terminal


def test_colour_and_a_run_that_has_not_started(tmp_path):
    assert "\x1b[32m" in render_frame(RunDir(_started(tmp_path)), colour=True)
    assert "waiting for `dtm run`" in render_frame(RunDir(tmp_path))


def _started(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    (root / "manifest.json").write_text('{"jobs": {"data": {"status": "done", "seconds": 3}}}')
    return root


def test_bad_run_dir_and_helpers(tmp_path, capsys):
    assert main(["watch", str(tmp_path / "nope"), "--once"]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert len(set(sparkline([1, 1, 1]))) == 1 and sparkline([]) == ""
    assert sparkline([0, 1]) == "▁█"
    assert progress_bar(5, 10, width=4) == "[##--] 5/10"
    assert progress_bar(None, 10) == ""

"""The thin CLI: user mistakes exit 2 with a message and no traceback."""

import yaml

from dtmerge.cli.main import main


def _config(tmp_path, **extra):
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n{"instruction": broken\n')
    cfg = {"name": "x", "runs_dir": str(tmp_path / "runs"), "model": {"path": str(tmp_path / "nope")},
           "data": {"path": str(data)}, **extra}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_malformed_data_line_is_a_clear_error(tmp_path, capsys):
    assert main(["run", str(_config(tmp_path)), "--stages", "data"]) == 2
    err = capsys.readouterr().err
    assert "d.jsonl:2: malformed JSON line" in err and "Traceback" not in err


def test_overrides_after_flags_and_unknown_keys(tmp_path, capsys):
    cfg = _config(tmp_path)
    assert main(["run", str(cfg), "--stages", "data", "train.lr=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.lr'" in err and "learning_rate" in err


def test_dry_run_flags_code_tasks_without_consent(tmp_path, capsys, tiny_model_dir):
    cfg = _config(tmp_path, eval={"tasks": ["humaneval"]})
    assert main(["run", str(cfg), "--dry-run", f"model.path={tiny_model_dir}"]) == 2
    out = capsys.readouterr()
    assert "allow_code_execution" in out.err


def test_dry_run_reports_missing_model(tmp_path, capsys):
    assert main(["run", str(_config(tmp_path)), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "nope" in captured.err and "Traceback" not in captured.err

"""The CLI's habits: --version, help with examples, usage errors answered by the command,
config keys from the schema, quiet output, warnings once, a closed pipe ending quietly, and an
exit that does not walk the libraries' objects."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from dtmerge import __version__
from dtmerge.cli.main import COMMANDS, main
from dtmerge.cli.output import WarningDigest

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_version_and_bare_dtm(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dtm {__version__}"
    assert main([]) == 2  # no command: a usage error, with the help on stderr
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_with_examples(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"dtm {command}" in out.split("examples:")[1]


def test_unknown_flag_is_answered_by_the_subcommands_usage(capsys):
    assert main(["report", "runs/x", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: dtm report") and "unrecognized arguments: --bogus" in err


def test_config_keys_lists_every_key_from_the_schema(capsys):
    from dtmerge.cli.config import config_keys
    from dtmerge.config import RunConfig

    assert main(["config", "keys"]) == 0
    out = capsys.readouterr().out
    keys = [row[0] for row in config_keys(RunConfig)]
    assert len(keys) > 60 and all(k in out for k in keys)
    assert "monitor.alert_webhook" in out and "Slack-compatible" in out
    assert main(["config", "keys", "monitor"]) == 0
    out = capsys.readouterr().out
    assert "monitor.patience" in out and "train." not in out
    for key, kind, default, text in config_keys(RunConfig):
        if key.split(".")[0] in ("model", "data", "disperse", "merge", "eval", "monitor", "tracking", "report"):
            assert text, f"{key} has no description"
    assert main(["config", "keys", "nope"]) == 2


def test_config_show_prints_the_resolved_config_of_a_run(tmp_path, capsys):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"name": "r", "model": {"path": "m"}, "data": {"path": "d.jsonl"}}))
    assert main(["config", "show", str(run), "train.learning_rate=0.001"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["learning_rate"] == 0.001
    assert shown["monitor"]["ratio_threshold"] == 3.0  # defaults filled in
    assert main(["config", "show", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_quiet_drops_the_stage_lines(capsys):
    assert main(["merge", "--list", "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["merge", "--list"]) == 0
    assert "ties" in capsys.readouterr().out


def test_each_warning_is_shown_once_and_library_deprecations_are_counted(capsys):
    with WarningDigest() as digest:
        for _ in range(3):
            warnings.warn("check your data", UserWarning)
        warnings.warn_explicit("old name", FutureWarning, "/x/site-packages/lib/mod.py", 1)
    digest.report()
    err = capsys.readouterr().err
    assert err.count("check your data") == 1 and "(x3)" in err
    assert "FutureWarning" not in err and "1 deprecation notices" in err


def test_a_library_log_message_is_shown_once_and_dtmerges_own_always():
    """lm-eval logs the same task warnings for every model it scores (every frontier candidate)."""
    script = ("import logging; from dtmerge.cli.output import setup_logging, WarningDigest; "
              "setup_logging('info'); d = WarningDigest().__enter__(); "
              "[logging.getLogger('lm_eval.api.task').warning('metric acc has no aggregation') "
              "for _ in range(3)]; "
              "[logging.getLogger('dtmerge.monitor').warning('probe fell') for _ in range(2)]; "
              "d.__exit__(None, None, None); d.report()")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=SRC), timeout=120)
    assert done.stderr.count("metric acc has no aggregation") == 1
    assert done.stderr.count("probe fell") == 2
    assert "2 repeats of library log messages" in done.stderr


def test_a_worker_folds_library_bars_and_deprecations_like_dtm():
    """Pool workers start from the fork server, not from dtm's process: the same policy is
    applied on entry (lm-eval passes disable=False to its bars, which TQDM_DISABLE ignores)."""
    script = ("import warnings; from tqdm import tqdm; "
              "from dtmerge.terminal import fold_library_output; fold_library_output(); "
              "print(tqdm(range(3), disable=False).disable, tqdm(range(3), desc='[train] sft', disable=False).disable); "
              "warnings.warn('old api', FutureWarning)")
    env = dict(os.environ, PYTHONPATH=SRC, TQDM_DISABLE="1")
    env.pop("DTMERGE_LIBRARY_DEPRECATIONS", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.stdout.split() == ["True", "False"]  # only dtmerge's own job line draws
    assert "old api" not in done.stderr  # raised from a module that is not dtmerge's
    env["DTMERGE_LIBRARY_DEPRECATIONS"] = "1"  # dtm --log-level debug
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=env, timeout=120)
    assert "old api" in shown.stderr


def test_output_into_a_closed_pipe_ends_quietly():
    # the reader is gone before dtm writes (as `dtm merge --list | head -1` once head exits)
    script = ("import os, sys; r, w = os.pipe(); os.close(r); os.dup2(w, 1); "
              "from dtmerge.cli.main import main; sys.exit(main(['merge', '--list']))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=SRC), timeout=120)
    assert done.returncode == 141
    assert done.stderr == ""


def test_the_dtm_command_exits_without_collecting_the_libraries_objects():
    """Python's shutdown collections over torch's, transformers' and lm-eval's ~480k objects
    took 1.7-2.0 s after every command that loaded them; `dtm` freezes them first. The exit
    code is the command's."""
    script = ("import gc, sys; import torch; from dtmerge.cli.main import entry; "
              "sys.argv = ['dtm', 'merge', '--list']; code = entry(); "
              "print('frozen', gc.get_freeze_count(), file=sys.stderr); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=SRC), timeout=120)
    assert done.returncode == 0 and "linear" in done.stdout
    assert int(done.stderr.split("frozen")[-1]) > 50_000
    bad = subprocess.run([sys.executable, "-c", script.replace("'--list'", "'--method', 'x'")],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=SRC),
                         timeout=120)
    assert bad.returncode == 2

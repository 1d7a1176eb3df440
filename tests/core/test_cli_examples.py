"""Every example under `dtm COMMAND --help` parses with dtm's own parser, names only config
keys the schema has, and the cheap ones run as printed; `dtm --help` lists the exit codes."""

import shutil
from pathlib import Path

import pytest
from doc_quotes import is_config_key, override_keys, parse_dtm

from dtmerge.cli.main import COMMANDS, EXAMPLES, EXIT_CODES, main

ROOT = Path(__file__).resolve().parents[2]
ALL_EXAMPLES = [e for examples in EXAMPLES.values() for e in examples]
# Cheap enough to run here, from a copy of the repository's configs/ and examples/.
RUNNABLE = ["dtm merge --list", "dtm recipes", "dtm recipes l2", "dtm config keys",
            "dtm config keys monitor",
            "dtm config show configs/example.yaml train.learning_rate=1e-4",
            "dtm run configs/example.yaml --dry-run"]


def test_every_command_has_examples():
    assert set(EXAMPLES) == set(COMMANDS)


@pytest.mark.parametrize("example", ALL_EXAMPLES)
def test_example_parses_with_known_keys(example):
    args = parse_dtm(example)
    assert args is not None and args.command == example.split()[1]
    unknown = [k for k in override_keys(args) if not is_config_key(k)]
    assert not unknown, f"{example!r} sets keys the config does not have: {unknown}"


def test_a_wrong_example_would_fail():
    with pytest.raises(AssertionError, match="does not parse"):
        parse_dtm("dtm compare runs/a runs/b --fail-on-regression")
    assert not is_config_key("train.learning_rat")
    assert is_config_key("train.learning_rate") and is_config_key("merge.params.density")
    assert is_config_key("train.optim")  # TRL SFTConfig pass-through


@pytest.mark.parametrize("example", RUNNABLE)
def test_cheap_example_runs_as_printed(example, tmp_path, monkeypatch, capsys):
    assert example in ALL_EXAMPLES, f"{example!r} is no longer an example: update RUNNABLE"
    for folder in ("configs", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(example.split()[1:])
    out = capsys.readouterr()
    assert code == 0, f"{example!r} exited {code}: {out.err[-2000:]}"
    assert out.out.strip()


def test_help_lists_the_exit_codes(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for code, meaning in EXIT_CODES.items():
        assert f"{code:<4} {meaning}" in text


def test_usage_error_and_bad_input_exit_2(tmp_path, capsys):
    assert main(["merge", "--no-such-flag"]) == 2
    assert main(["config", "keys", "no_such_section"]) == 2
    assert "no config section" in capsys.readouterr().err


def test_export_out_and_its_deprecated_alias_to(capsys):
    assert parse_dtm("dtm export runs/x dtm --out shipped/").out == "shipped/"
    assert parse_dtm("dtm export runs/x dtm --to shipped/").deprecated_to == "shipped/"
    assert main(["export", "--help"]) == 0
    assert "--to" not in capsys.readouterr().out  # hidden: one flag name per idea

"""State files dtmerge wrote, damaged afterwards (a full disk, a copy cut short, a hand edit).

Each file is truncated at seeded byte offsets, or has garbage written over its middle; the
command (or library function) that reads it must fail with a DtmError naming the file and
how to recover (through the CLI: exit 2, no traceback), and leave every other file of the
run byte-identical.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from dtmerge.cli.main import main
from dtmerge.config import RunConfig
from dtmerge.errors import DamagedStateError, DtmError
from dtmerge.rundir import RunDir, write_run_config

sys.path.insert(0, str(Path(__file__).parents[1] / "report"))
from report_fixtures import make_run, write_eval  # noqa: E402

SEEDS = (0, 1, 2)


def damaged_versions(data: bytes, seed: int) -> list[tuple[str, bytes]]:
    """The file cut at 0 and at two seeded offsets (never only its final newline), and a
    copy with seeded garbage over its middle."""
    rng = random.Random(seed)
    end = len(data.rstrip(b"\n"))
    cuts = [0] + sorted(rng.sample(range(1, end), 2))
    garbage = bytes(rng.randrange(256) for _ in range(24))
    middle = len(data) // 2
    return ([(f"cut at byte {c} of {len(data)}", data[:c]) for c in cuts]
            + [("garbage over the middle", data[:middle] + garbage + data[middle + 24:])])


def snapshot(root: Path, skip: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p != skip and p.name != ".lock"}


def report_cli(root: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["report", str(root)])
    return code, capsys.readouterr().err


@pytest.fixture
def reported_run(tmp_path, capsys) -> Path:
    """A run as `dtm run` leaves it (resolved config, manifest, eval results, recipes.json,
    bias.json, linked runs), reported once, so a rerun of `dtm report` reads every file."""
    root = make_run(tmp_path / "runs" / "demo")
    cfg = RunConfig(name=root.name, runs_dir=str(root.parent), model={"path": "unused"},
                    data={"path": "unused"}, report={"bootstrap_samples": 100})
    write_run_config(root, cfg.to_yaml())
    (root / "recipes.json").write_text(json.dumps(
        {"sft": {"recipe": "sft"}, "dtm": {"recipe": "dtm"}}, indent=2))
    (root / "linked_runs.json").write_text(json.dumps({"dtm_long": str(tmp_path / "long")}) + "\n")
    code, err = report_cli(root, capsys)
    assert code == 0, err
    return root


# file of the run -> the command a user reruns to write it again (said in the error)
READ_BY_REPORT = {
    "manifest.json": "manifest.json",
    "config.yaml": "dtm run",
    "eval/sft.json": "dtm eval",
    "eval/bias.json": "dtm eval",
    "recipes.json": "dtm merge",
    "linked_runs.json": "dtm demo",
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(READ_BY_REPORT))
def test_dtm_report_refuses_a_damaged_state_file_and_touches_nothing(reported_run, capsys,
                                                                    name, seed):
    path = reported_run / name
    intact = path.read_bytes()
    before = snapshot(reported_run, path)
    for how, damaged in damaged_versions(intact, seed):
        path.write_bytes(damaged)
        code, err = report_cli(reported_run, capsys)
        assert code == 2, f"{name} {how}: exit {code}\n{err}"
        assert "Traceback" not in err
        assert str(path) in err and "damaged" in err, f"{name} {how}: {err}"
        assert READ_BY_REPORT[name] in err.split("To recover:", 1)[1], err
        assert snapshot(reported_run, path) == before, f"{name} {how}: the run was changed"
    path.write_bytes(intact)  # put back, the run reports again
    assert report_cli(reported_run, capsys)[0] == 0


def test_a_damaged_frontier_record_is_refused_by_the_report(reported_run, capsys):
    path = reported_run / "frontier" / "frontier.json"
    path.parent.mkdir()
    record = json.dumps({"chosen": {"name": "linear_0"}, "candidates": [{"name": "linear_0"}]})
    before = snapshot(reported_run, path)
    for how, damaged in damaged_versions(record.encode(), 0):
        path.write_bytes(damaged)
        code, err = report_cli(reported_run, capsys)
        assert code == 2 and "Traceback" not in err, f"{how}: {err}"
        assert str(path) in err and "dtm frontier" in err
        assert snapshot(reported_run, path) == before


def test_a_cut_manifest_says_what_is_lost(reported_run, capsys):
    path = reported_run / "manifest.json"
    path.write_bytes(path.read_bytes()[:40])
    code, err = report_cli(reported_run, capsys)
    assert code == 2
    assert "every stage runs again" in err and "copy of manifest.json" in err


def test_a_config_cut_at_a_line_end_is_still_refused(reported_run, capsys):
    """Cut between two lines the file is valid YAML with later keys back at their defaults:
    the end line dtm run writes tells it from the file as written."""
    path = reported_run / "config.yaml"
    text = path.read_text()
    cut = text[: text.index("\nreport:") + 1]
    path.write_text(cut)
    code, err = report_cli(reported_run, capsys)
    assert code == 2 and "cut short" in err and "# end of config.yaml" in err


def test_a_hand_edited_config_that_keeps_the_end_line_is_honoured(reported_run, capsys):
    path = reported_run / "config.yaml"
    path.write_text(path.read_text().replace("bootstrap_samples: 100", "bootstrap_samples: 120"))
    assert report_cli(reported_run, capsys)[0] == 0


# -- readers outside `dtm report`, called as the stage that reads them does


def _each_damage(path: Path, read, must_say: str) -> None:
    intact = path.read_bytes()
    for seed in SEEDS:
        for how, damaged in damaged_versions(intact, seed):
            path.write_bytes(damaged)
            with pytest.raises(DamagedStateError) as err:
                read()
            assert str(path) in str(err.value) and must_say in str(err.value), how
    path.write_bytes(intact)
    read()  # intact again: it reads


def test_report_json_readers(reported_run):
    from dtmerge.demo.testbed.demo import line_gaps, recipe_seconds
    from dtmerge.report.tracking import final_metrics

    run = RunDir(reported_run)
    path = run.report_dir / "report.json"
    before = snapshot(reported_run, path)
    for read in (lambda: line_gaps(run), lambda: recipe_seconds(run), lambda: final_metrics(run)):
        _each_damage(path, read, "dtm report")
    assert snapshot(reported_run, path) == before


def test_calibration_record(tmp_path):
    from dtmerge.recipes.calibrate import calibration_path, read_calibration

    run = RunDir(tmp_path / "run")
    path = calibration_path(run, "l2")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"coef": 0.25, "reason": "largest within tolerance"}, indent=2))
    _each_damage(path, lambda: read_calibration(run, "l2"), "dtm train")


def test_split_record(tmp_path):
    from dtmerge.evaluate.split import read_split_file

    eval_dir = tmp_path / "run" / "eval"
    eval_dir.mkdir(parents=True)
    (eval_dir / "split.json").write_text(json.dumps({"validation_fraction": 0.5, "seed": 3}))
    _each_damage(eval_dir / "split.json", lambda: read_split_file(eval_dir), "dtm eval")


def test_best_checkpoint_record(tmp_path):
    from dtmerge.evaluate.stage import best_is_final

    run = RunDir(tmp_path / "run")
    best = run.model("sft_best")
    best.mkdir(parents=True)
    (best / "best.json").write_text(json.dumps({"step": 40, "score": 0.7, "by": "probe_acc"}))
    _each_damage(best / "best.json", lambda: best_is_final(run, best), "dtm train")


def test_model_kind_marker(tmp_path):
    from dtmerge.models.marker import MARKER_FILE, model_kind

    model = tmp_path / "run" / "models" / "ens"
    model.mkdir(parents=True)
    (model / MARKER_FILE).write_text(json.dumps({"kind": "ensemble", "members": ["a", "b"]}))
    _each_damage(model / MARKER_FILE, lambda: model_kind(model), "dtm merge")


def test_eval_result_reused_by_a_rerun_of_eval(tmp_path):
    from dtmerge.evaluate.reuse import reusable_results

    root = tmp_path / "run"
    path = write_eval(root, "sft", {"facts": ("knowledge", [1.0, 0.0, 1.0])})
    job = {"status": "done", "fingerprint": "fp", "tasks": ["facts"]}
    _each_damage(path, lambda: reusable_results(path, job, lambda tasks: ["fp"], ["facts"]),
                 "dtm eval")


def test_a_job_refused_on_a_damaged_input_leaves_the_manifest_as_it_was(tmp_path):
    from dtmerge.rundir import rerun_hint, read_state_json, run_job

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.update_job("report", status="done", fingerprint="old")
    before = run.manifest_path.read_bytes()
    (run.root / "recipes.json").write_text('{"sft": ')

    def work():
        read_state_json(run.root / "recipes.json", rerun_hint("dtm merge"))

    with pytest.raises(DtmError):
        run_job(run, "report", "new", work, log=lambda _m: None)
    assert run.manifest_path.read_bytes() == before


# -- an eval result whose model was deleted since


def test_an_eval_result_of_a_deleted_model_is_retired_not_reported(reported_run, capsys):
    run = RunDir(reported_run)
    for name in ("sub_2", "dtm"):
        run.model(name).mkdir(parents=True, exist_ok=True)
        run.update_job(f"eval:{name}", status="done", fingerprint="fp",
                       inputs={"model": f"runs/demo/models/{name}"})
    run.update_job("eval:base", status="done", fingerprint="fp",
                   inputs={"model": "/elsewhere/base_model"})  # not this run's to lose
    assert report_cli(reported_run, capsys)[0] == 0
    assert "| sub_2 |" in (run.report_dir / "report.md").read_text()

    run.model("sub_2").rmdir()  # the user deletes models/sub_2
    capsys.readouterr()
    assert main(["report", str(reported_run)]) == 0
    assert "[retire] eval/sub_2.json" in capsys.readouterr().out
    md = (run.report_dir / "report.md").read_text()
    assert "| sub_2 |" not in md and "| dtm |" in md and "| base |" in md
    retired = list((reported_run / "retired").glob("*/eval/sub_2.json"))
    assert len(retired) == 1 and not run.eval_file("sub_2").exists()
    assert "eval:sub_2" not in run.read_manifest()["jobs"]


def test_monitor_curve_read_back_by_a_resumed_training(tmp_path):
    """A cut between two lines leaves a shorter curve that is still true (the points kept are
    the ones measured): read as such. A cut inside a line, or garbage, is damage."""
    from dtmerge.evaluate.monitor import read_monitor_lines

    path = tmp_path / "run" / "monitor" / "sub_0" / "monitor.jsonl"
    path.parent.mkdir(parents=True)
    rows = [{"step": s, "probe_acc": 0.5 + s / 1000} for s in range(0, 100, 20)]
    intact = "".join(json.dumps(r) + "\n" for r in rows).encode()
    refused = 0
    for seed in SEEDS:
        for how, damaged in damaged_versions(intact, seed):
            path.write_bytes(damaged)
            if damaged == intact[:len(damaged)] and damaged.endswith(b"\n") or not damaged:
                assert read_monitor_lines(path, 60) == rows[:damaged.count(b"\n")], how
                continue
            with pytest.raises(DamagedStateError, match="dtm train"):
                read_monitor_lines(path, 60)
            refused += 1
    assert refused >= len(SEEDS) * 2  # the garbage, and cuts inside lines


def test_a_best_checkpoint_training_no_longer_keeps_has_its_old_result_retired_before_eval(
        tmp_path, monkeypatch):
    """The monitor may decide, on a rerun, that no earlier step beats the final one: the
    `<job>_best` model then goes during the train stage, and its old eval result must not
    reach the eval stage or the report as current."""
    import dtmerge.pipeline as pipeline
    from dtmerge.config import RunConfig

    cfg = RunConfig.model_validate({"name": "r", "runs_dir": str(tmp_path), "model": {"path": "m"},
                                    "data": {"path": "d.jsonl"}})
    run = RunDir(cfg.run_dir)
    run.model("sft_best").mkdir(parents=True)
    (run.root / "eval").mkdir()
    run.eval_file("sft_best").write_text('{"tasks": {}}')
    run.update_job("eval:sft_best", status="done", fingerprint="fp",
                   inputs={"model": str(run.model("sft_best"))})
    seen = {}

    def train(cfg, run, log=print):
        run.model("sft_best").rmdir()  # the keeper wrote no _best this time

    def evaluate(cfg, run, log=print):
        seen["eval"] = run.eval_file("sft_best").exists()

    monkeypatch.setattr(pipeline, "stage_function",
                        lambda stage: {"train": train, "eval": evaluate}[stage])
    monkeypatch.setattr("dtmerge.dryrun.checks.validate_inputs", lambda cfg, order: [])
    pipeline._run_stages(cfg, ["train", "eval"], log=lambda _m: None)
    assert seen["eval"] is False
    assert list((run.root / "retired").glob("*/eval/sft_best.json"))

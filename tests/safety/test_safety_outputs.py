"""Catalogue cases 1-3 and 5: outputs are never lost, shared or taken from an unfinished stage."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import yaml

from tiny import write_manifest
from dtmerge.cli.main import main
from dtmerge.rundir import RunDir, run_job
from tiny import build_tiny_model_dir


def _two_models(tmp_path, tiny_model_dir):
    return [build_tiny_model_dir(tmp_path / f"m{k}", seed=k + 1) for k in range(2)]


# -- case 1: dtm merge --out


def test_merge_refuses_non_empty_out_without_overwrite(tmp_path, tiny_model_dir, capsys):
    m1, m2 = _two_models(tmp_path, tiny_model_dir)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    args = ["merge", "--base", str(tiny_model_dir), "--models", str(m1), str(m2), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error: --out {out} already exists and is not empty: choose a new directory, or " \
           "pass --overwrite to replace its contents" in err
    assert (out / "keep.txt").read_text() == "precious"
    assert main(args + ["--overwrite"]) == 0
    assert (out / "model.safetensors").exists() and not (out / "keep.txt").exists()


def test_merge_never_writes_over_an_input_even_with_overwrite(tmp_path, tiny_model_dir, capsys):
    m1, m2 = _two_models(tmp_path, tiny_model_dir)
    before = sorted(p.name for p in m1.iterdir())
    for out in (m1, tmp_path, tiny_model_dir):  # an input, a folder holding inputs, the base
        assert main(["merge", "--base", str(tiny_model_dir), "--models", str(m1), str(m2),
                     "--out", str(out), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert f"error: --out {out} overlaps " in err and "an input of this merge" in err
    assert sorted(p.name for p in m1.iterdir()) == before


def test_merge_out_dot_is_a_clear_error(tmp_path, tiny_model_dir, capsys, monkeypatch):
    m1, m2 = _two_models(tmp_path, tiny_model_dir)
    work = tmp_path / "empty"
    work.mkdir()
    monkeypatch.chdir(work)
    capsys.readouterr()
    assert main(["merge", "--base", str(tiny_model_dir), "--models", str(m1), str(m2),
                 "--out", "."]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("error: --out . is the current directory or holds it: give a new "
                           "directory for the merged model, e.g. --out merged")


# -- case 2: one process per run directory


def test_second_run_on_a_locked_run_dir_fails_at_once_naming_the_holder(make_config, tmp_path,
                                                                       capsys):
    cfg = make_config()
    run = tmp_path / "runs" / "r"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dtmerge.process_guard import run_lock\n"
         f"with run_lock({str(run)!r}):\n print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.time()
        assert main(["run", str(cfg), "--stages", "data"]) == 2
        assert time.time() - started < 5
        err = capsys.readouterr().err
        assert f"error: {run.resolve()} is in use by another dtm process (pid {holder.pid} on " in err
        assert "wait for it to finish or stop it" in err
        assert not (run / "data").exists()
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock
        holder.wait()
    assert main(["run", str(cfg), "--stages", "data"]) == 0


def test_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    from dtmerge.process_guard import run_lock

    with run_lock(tmp_path / "r"):
        with run_lock(tmp_path / "r"):
            pass
    with run_lock(tmp_path / "r"):
        pass


# -- case 3: variants the config no longer produces


def test_lowering_k_retires_the_extra_submodel_everywhere(make_config, tmp_path, capsys):
    run = tmp_path / "runs" / "r"
    for name in ("sub_0", "sub_1", "sub_2", "dtm"):
        (run / "models" / name).mkdir(parents=True)
        (run / "eval").mkdir(exist_ok=True)
        (run / "eval" / f"{name}.json").write_text("{}")
    write_manifest(run, {f"train:sub_{k}": {"status": "done"} for k in range(3)}
                   | {"eval:sub_2": {"status": "done"}})
    cfg = make_config(disperse={"num_portions": 2})
    assert main(["run", str(cfg), "--stages", "data"]) == 0
    out = capsys.readouterr().out
    assert "[retire] models/sub_2, eval/sub_2.json: disperse.num_portions is now 2; moved to " \
           "retired/" in out
    assert not (run / "models" / "sub_2").exists() and not (run / "eval" / "sub_2.json").exists()
    (retired,) = (run / "retired").iterdir()
    assert (retired / "models" / "sub_2").is_dir() and (retired / "eval" / "sub_2.json").exists()
    jobs = json.loads((run / "manifest.json").read_text())["jobs"]
    assert "train:sub_2" not in jobs and "eval:sub_2" not in jobs and "train:sub_1" in jobs
    assert (run / "models" / "sub_1").exists() and (run / "eval" / "dtm.json").exists()


# -- case 5: a stage refuses what another stage left unfinished


def test_eval_refuses_a_merged_model_whose_merge_was_killed(make_config, tmp_path, mc_tasks,
                                                           tiny_model_dir, capsys):
    cfg = make_config(eval={"tasks": ["tiny_mc"], "include_path": [str(mc_tasks)],
                            "variants": ["dtm"]})
    run = tmp_path / "runs" / "r"
    shutil.copytree(tiny_model_dir, run / "models" / "dtm")
    (run / "config.yaml").write_text(yaml.safe_dump(yaml.safe_load(cfg.read_text())))
    write_manifest(run, {"merge": {"status": "running", "fingerprint": "x"}})
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"error: {run / 'models' / 'dtm'} is unfinished: manifest.json says job "
                           f"'merge' is running (killed, or still running); rerun `dtm merge "
                           f"{run}` first")
    assert not (run / "eval" / "dtm.json").exists()


def test_every_stage_checks_its_producer(tmp_path):
    run = RunDir(tmp_path)
    write_manifest(tmp_path, {"train:sub_1": {"status": "failed", "error": "TrainingError: boom"},
                              "data": {"status": "done"}})
    run.require_finished("data", run.all_data)
    try:
        run.require_finished("train:sub_1", run.model("sub_1"))
    except Exception as err:  # noqa: BLE001 - the message is the point
        assert str(err) == (f"{run.model('sub_1')} is unfinished: manifest.json says job "
                            "'train:sub_1' failed (TrainingError: boom); rerun "
                            f"`dtm train {tmp_path}` first")
    else:
        raise AssertionError("a failed job's output was accepted")


def test_run_job_redoes_a_finished_job_whose_outputs_are_gone(tmp_path):
    run, logs, calls = RunDir(tmp_path), [], []
    out = tmp_path / "out.txt"

    def work():
        calls.append(1)
        out.write_text("x")

    assert run_job(run, "j", "fp", work, outputs=[out], log=logs.append)
    assert not run_job(run, "j", "fp", work, outputs=[out], log=logs.append)
    out.unlink()
    assert run_job(run, "j", "fp", work, outputs=[out], log=logs.append)
    assert len(calls) == 2
    assert logs[-1] == f"[redo] j: done before, but its output {out} is gone; making it again"

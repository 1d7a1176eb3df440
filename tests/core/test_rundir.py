import pytest

from dtmerge.rundir import RunDir, atomic_dir, hash_path, run_job


def test_atomic_dir_keeps_old_output_on_failure(tmp_path):
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("killed")
    assert (final / "a").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_run_job_skips_redoes_and_never_marks_failed_done(tmp_path):
    run = RunDir(tmp_path)
    calls, logs = [], []
    assert run_job(run, "j", "fp1", lambda: calls.append(1), log=logs.append)
    assert not run_job(run, "j", "fp1", lambda: calls.append(1), log=logs.append)
    assert run_job(run, "j", "fp2", lambda: calls.append(1), log=logs.append)
    assert len(calls) == 2 and any("[redo] j" in m for m in logs)

    def boom():
        raise ValueError("x")

    with pytest.raises(ValueError):
        run_job(run, "k", "fp", boom)
    assert run.job("k")["status"] == "failed" and not run.is_done("k", "fp")


def test_hash_path_changes_with_content(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "x").write_text("1")
    h1 = hash_path(d)
    (d / "x").write_text("2")
    assert hash_path(d) != h1

"""Fault injection for a tiny `dtm run`: SIGKILL it at seeded points, rerun, compare.

Used by tests/faults/test_faults.py (CI, 20 kills) and scripts/chaos.py (long runs by hand).
Every kill is a real SIGKILL of a child process: no `finally`, no atexit, no flush. Kill
points are the fault points of `dtmerge.rundir.fault_point` (every manifest update, every
atomic write and directory swap, every merged tensor, every training log step), counted in
the child, so a seed reproduces the same kills. `--external` kills (chaos.py) instead come
from outside at random wall-clock times, which also lands inside libraries' own writes
(e.g. transformers saving a checkpoint).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Jobs whose outputs must be bit-identical to an uninterrupted run, and how to digest them.
_MODEL_JOBS = {"train:sub_0": "sub_0", "train:sub_1": "sub_1", "train:sft": "sft", "merge": "dtm"}


def write_inputs(root: Path, base_model: Path | None = None) -> Path:
    """A tiny model, 32 Alpaca examples, a local multiple-choice task and a K=2 config."""
    from tiny import build_tiny_model_dir, write_alpaca, write_mc_task

    root.mkdir(parents=True, exist_ok=True)
    base = base_model or build_tiny_model_dir(root / "base")
    data = write_alpaca(root / "data.jsonl", 32)
    rows = [{"question": f"where is {n} born", "choices": ["paris", "london", "rome", "berlin"],
             "answer": i % 4} for i, n in enumerate(["alice", "bob", "carol", "dave"] * 2)]
    tasks = write_mc_task(root / "tasks", "tiny_mc", rows)
    cfg = {
        "name": "reference", "runs_dir": str(root / "runs"), "model": {"path": str(base)},
        "data": {"path": str(data), "eval_fraction": 0.125},
        "disperse": {"strategy": "random", "num_portions": 2},
        "train": {"method": "lora", "max_steps": 4, "batch_size": 4, "grad_accum": 1,
                  "learning_rate": 5e-3, "warmup_steps": 0, "max_length": 128, "save_steps": 2,
                  "logging_steps": 1, "lora": {"r": 4, "alpha": 8}},
        "merge": {"method": "ties", "params": {"density": 0.5}},
        "eval": {"tasks": ["tiny_mc"], "include_path": [str(tasks)], "batch_size": 8,
                 "variants": ["base", "sft", "dtm", "submodels"]},
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def warm_imports(cfg_path: Path) -> None:
    """Import everything once in the parent so each forked child starts working at once."""
    import lm_eval  # noqa: F401
    import peft  # noqa: F401
    import trl  # noqa: F401

    import dtmerge.data, dtmerge.disperse, dtmerge.evaluate.harness, dtmerge.merge  # noqa: F401,E401
    import dtmerge.pipeline, dtmerge.report, dtmerge.train.trainer  # noqa: F401,E401
    from dtmerge.evaluate.groups import task_manager_for

    cfg = yaml.safe_load(Path(cfg_path).read_text())
    task_manager_for(cfg["eval"]["tasks"], cfg["eval"]["include_path"])


def run_child(cfg_path: Path, name: str, kill_at: int | None, log: Path,
              trace: Path | None = None) -> str:
    """`dtm run cfg name=NAME` in a forked child; "killed", "ok" or "failed"."""
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.environ.pop("DTM_FAULT_KILL_AT", None)
            if kill_at:
                os.environ["DTM_FAULT_KILL_AT"] = str(kill_at)
            if trace:
                os.environ["DTM_FAULT_TRACE"] = str(trace)
            from dtmerge.cli.main import main

            code = main(["run", str(cfg_path), f"name={name}"])
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed"
    return "ok" if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else "failed"


def _sha(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def digests(run: Path) -> dict[str, str]:
    """A digest of the outputs of every job the manifest calls done (checked ones only)."""
    manifest = run / "manifest.json"
    jobs = json.loads(manifest.read_text())["jobs"] if manifest.exists() else {}
    out = {}
    for job, record in jobs.items():
        if record.get("status") != "done":
            continue
        if job == "data":
            out[job] = _sha([run / "data" / "all.jsonl", run / "data" / "heldout.jsonl"])
        elif job == "disperse":
            out[job] = _sha(sorted((run / "data").glob("portion_*.jsonl"))
                            + [run / "data" / "summary.json"])
        elif job in _MODEL_JOBS:
            out[job] = _sha(sorted((run / "models" / _MODEL_JOBS[job]).glob("*.safetensors")))
        elif job.startswith("eval:") and job != "eval:bias":
            result = json.loads((run / "eval" / f"{job[5:]}.json").read_text())
            out[job] = json.dumps({t: r["score"] for t, r in result["tasks"].items()})
    return out


@dataclass
class ChaosReport:
    kills_tried: int = 0
    kills_landed: int = 0
    reruns: int = 0
    final_identical: int = 0
    chains: int = 0
    outputs_lost: list[str] = field(default_factory=list)  # done but wrong, or missing at the end
    kill_points: list[str] = field(default_factory=list)  # the fault point each kill landed on
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    started: float = field(default_factory=time.time)

    def where(self) -> str:
        """Kills per job they interrupted (the job last started before the kill)."""
        jobs: dict[str, int] = {}
        for point in self.kill_points:
            job = point.split(":")[0]
            jobs[job] = jobs.get(job, 0) + 1
        return ", ".join(f"{k}: {n}" for k, n in sorted(jobs.items()))

    def line(self) -> str:
        return (f"kills tried {self.kills_tried}, landed {self.kills_landed}, reruns "
                f"{self.reruns}, chains finished bit-identical {self.final_identical}/"
                f"{self.chains}, outputs lost or wrong {len(self.outputs_lost)}, failures "
                f"{len(self.failures)}, {self.seconds:.0f} s")


def reference_run(cfg_path: Path, work: Path) -> tuple[dict[str, str], list[str]]:
    """The uninterrupted run: its digests and the labels of the fault points it passes."""
    trace = work / "reference.trace"
    status = run_child(cfg_path, "reference", None, work / "reference.log", trace)
    if status != "ok":
        raise RuntimeError(f"the reference run failed; see {work / 'reference.log'}")
    labels = [line.split(" ", 1)[1] for line in trace.read_text().splitlines()]
    return digests(Path(yaml.safe_load(cfg_path.read_text())["runs_dir"]) / "reference"), labels


def _kill_point(trace: Path) -> str:
    """'<job the kill interrupted>: <fault point>' of a killed run's trace."""
    passed = [line.split(" ", 1)[1] for line in trace.read_text().splitlines()]
    running = [p.split()[1] for p in passed if p.startswith("manifest ") and p.endswith(" running")]
    return f"{running[-1] if running else 'start'}: {passed[-1]}"


def _resume_point(trace: Path, reference: list[str], previous: int) -> int:
    """Where in the reference a rerun after this killed run starts: at the manifest write
    that starts the job it was killed in (finished jobs are skipped, that one is redone)."""
    started = [label for label in (line.split(" ", 1)[1] for line in
                                   trace.read_text().splitlines())
               if label.startswith("manifest ") and label.endswith(" running")]
    if not started or started[-1] not in reference:
        return previous
    return reference.index(started[-1])  # 0-based index of "manifest J running" = its write + 1


def chaos(cfg_path: Path, work: Path, kills: int, seed: int, reference: dict[str, str],
          labels: list[str], deadline: float | None = None, log=print) -> ChaosReport:
    """Kill chains of reruns at `kills` seeded points, checking every intermediate state.

    Each chain is a fresh run directory; its kill points are a sorted sample of the
    uninterrupted run's fault points. A rerun skips finished jobs and redoes the killed one,
    so it is told to die at the target's distance from the start of that job (plus the one
    point, writing config.yaml, every run passes first). A chain ends with a rerun nobody
    kills, whose outputs must be bit-identical to the uninterrupted run's.
    """
    rng = random.Random(seed)
    runs_dir = Path(yaml.safe_load(cfg_path.read_text())["runs_dir"])
    report, left, points = ChaosReport(), kills, len(labels)
    while left > 0 and (deadline is None or time.time() < deadline):
        name = f"chain{report.chains}"
        targets = sorted(rng.sample(range(1, points + 1), min(left, points)))
        start = 0  # 1-based reference index the next rerun begins at, less its preamble
        for target in targets:
            if deadline is not None and time.time() > deadline:
                break
            report.kills_tried += 1
            left -= 1
            trace = work / f"{name}.kill{report.kills_tried}.trace"
            kill_at = target if start == 0 else max(2, target - start + 2)
            status = run_child(cfg_path, name, kill_at, work / f"{name}.log", trace)
            report.reruns += 1
            _check_done_outputs(runs_dir / name, reference, report, f"{name} kill at {target}")
            if status != "killed":  # the rerun finished before the point: the chain is done
                break
            report.kills_landed += 1
            report.kill_points.append(_kill_point(trace))
            start = _resume_point(trace, labels, start)
        _finish_chain(cfg_path, runs_dir, name, work, reference, report, log)
    return report


def _finish_chain(cfg_path, runs_dir, name, work, reference, report, log) -> None:
    status = run_child(cfg_path, name, None, work / f"{name}.log")
    report.reruns += 1
    report.chains += 1
    final = digests(runs_dir / name)
    lost = [j for j in reference if final.get(j) != reference[j]]
    if status != "ok":
        report.failures.append(f"{name}: the final rerun failed, see {work / f'{name}.log'}")
    elif lost:
        report.outputs_lost += [f"{name}: {j} differs from the uninterrupted run" for j in lost]
    else:
        report.final_identical += 1
    debris = [str(p) for p in (runs_dir / name).rglob(".dtm-merge-*")]
    report.outputs_lost += [f"{name}: scratch folder left: {d}" for d in debris]
    report.seconds = time.time() - report.started
    log(f"[chaos] {name}: {status}; {report.line()}")


def _check_done_outputs(run: Path, reference: dict[str, str], report: ChaosReport, when: str):
    """No job may be marked done with an output that differs from the uninterrupted run's."""
    try:
        now = digests(run)
    except (OSError, ValueError, KeyError) as err:
        report.outputs_lost.append(f"{when}: a job marked done has an unreadable output ({err})")
        return
    for job, digest in now.items():
        if job in reference and digest != reference[job]:
            report.outputs_lost.append(f"{when}: {job} marked done with a different output")

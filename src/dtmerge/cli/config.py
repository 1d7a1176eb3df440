"""`dtm config keys [SECTION]` and `dtm config show RUN_DIR|CONFIG [key=value ...]`.

`keys` lists every config key with its type, default and description, read from the pydantic
schema itself (so it cannot drift from what the loader accepts); `show` prints the config a
run used (or a YAML resolves to), with every default filled in.
"""

from __future__ import annotations

import argparse
import json
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["keys", "show"], help="keys: every key; show: a resolved config")
    p.add_argument("target", nargs="?", help="keys: a section (train, monitor...); show: a run "
                   "directory or a config YAML")
    p.add_argument("overrides", nargs="*", help="show: overrides such as train.learning_rate=1e-4")


def _type_name(annotation) -> str:
    text = str(annotation) if typing.get_origin(annotation) else getattr(annotation, "__name__", str(annotation))
    return text.replace("typing.", "").replace("NoneType", "None")


def _model_class(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _default(field) -> str:
    if field.default is PydanticUndefined:
        if field.default_factory is not None:
            return json.dumps(field.default_factory(), default=str)
        return "(required)"
    if isinstance(field.default, BaseModel):
        return "(section)"
    return json.dumps(field.default, default=str)


def _trl_help(name: str) -> str:
    """The help TRL's SFTConfig gives a field of the same name (train.* keys are passed to it)."""
    try:
        from trl import SFTConfig
    except ImportError:
        return ""
    field = getattr(SFTConfig, "__dataclass_fields__", {}).get(name)
    text = (field.metadata.get("help") or "") if field is not None else ""
    return f"{text.split('. ')[0].rstrip('.')} (TRL SFTConfig)" if text else ""


def config_keys(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every field, sections expanded depth-first;
    a train.* key without its own description gets the help of TRL's field of that name."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        section = _model_class(field.annotation)
        if section is not None:
            rows += config_keys(section, key + ".")
            continue
        text = field.description or (_trl_help(name) if key.startswith("train.") else "")
        rows.append((key, _type_name(field.annotation), _default(field), " ".join(text.split())))
    return rows


def _show(target: str, overrides: list[str]) -> str:
    import yaml

    from dtmerge.config import load_config
    from dtmerge.errors import ConfigError
    from dtmerge.rundir import load_run_config

    path = Path(target)
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"{target} is not a run directory (no config.yaml in it); give a "
                              "run directory (runs/NAME) or a config YAML")
    cfg = load_run_config(path, overrides) if path.is_dir() else load_config(path, overrides)
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def run(args: argparse.Namespace) -> int:
    from dtmerge.config import RunConfig
    from dtmerge.errors import ConfigError

    if args.action == "show":
        if not args.target:
            raise ConfigError("dtm config show needs a run directory or a config YAML")
        print(_show(args.target, args.overrides), end="")
        return 0
    rows = config_keys(RunConfig)
    if args.target:
        rows = [r for r in rows if r[0].startswith(args.target.rstrip(".") + ".")]
        if not rows:
            sections = sorted({r[0].split(".")[0] for r in config_keys(RunConfig) if "." in r[0]})
            raise ConfigError(f"no config section {args.target!r}; sections: {', '.join(sections)}")
    width = max(len(r[0]) for r in rows)
    for key, kind, default, text in rows:
        print(f"{key:<{width}}  {kind}  = {default}" + (f"\n{'':<{width}}  {text}" if text else ""))
    return 0

"""Helpers for the tests that keep quoted `dtm ...` commands and config keys true: a command is
parsed by dtm's own argparse parser, a key is looked up in the pydantic schema."""

from __future__ import annotations

import re
import shlex
from functools import cache

import yaml

from dtmerge.cli.config import config_keys
from dtmerge.cli.main import COMMANDS, _parse
from dtmerge.config import RunConfig


def dtm_tokens(command: str) -> list[str]:
    """The arguments after `dtm` of one shell line, up to `&&`, `|`, `;` or a comment."""
    tokens = shlex.split(command, comments=True)
    assert tokens and tokens[0] == "dtm", f"not a dtm command: {command!r}"
    out = []
    for token in tokens[1:]:
        if token in ("&&", "||", "|", ";", ">", "2>"):
            break
        out.append(token)
    return out


def parse_dtm(command: str, prose: bool = False):
    """argparse's namespace for `command`; a usage error fails the test. With `prose`, a bare
    command name (`dtm eval` in a sentence) only has to exist."""
    argv = dtm_tokens(command)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("--help", "-h", "--version"):
        raise AssertionError(f"{command!r}: no such command {argv[0]!r}")
    if (prose and len(argv) == 1) or "--help" in argv or "-h" in argv:
        return None
    try:
        return _parse(argv)[1]
    except SystemExit as exit_:
        raise AssertionError(f"{command!r} does not parse (argparse exit {exit_.code})") from None


@cache
def _schema() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(leaf keys, section prefixes, leaf keys that hold free-form dicts or lists)."""
    rows = config_keys(RunConfig)
    leaves = frozenset(r[0] for r in rows)
    sections = frozenset(".".join(k.split(".")[:i]) for k in leaves for i in range(1, k.count(".") + 1))
    open_ended = frozenset(r[0] for r in rows if r[1].startswith(("dict", "list")))
    return leaves, sections, open_ended


@cache
def _sft_fields() -> frozenset[str]:
    from dtmerge.sft_fields import SFT_ALIASES, _sft_field_names

    return frozenset(_sft_field_names()) | frozenset(SFT_ALIASES)


def is_config_key(key: str) -> bool:
    """A key (or section) of the run config; `train.X` may also be a TRL SFTConfig field."""
    leaves, sections, open_ended = _schema()
    if key in leaves or key in sections:
        return True
    if any(key.startswith(k + ".") for k in open_ended):  # merge.params.density
        return True
    parts = key.split(".")
    return len(parts) == 2 and parts[0] == "train" and parts[1] in _sft_fields()


OVERRIDE = re.compile(r"^([a-z_][a-z_0-9.]*)=")


def override_keys(args) -> list[str]:
    """Keys of the `key=value` overrides (placeholders such as `[key=value ...]` are skipped)."""
    return [m.group(1) for o in getattr(args, "overrides", None) or [] if (m := OVERRIDE.match(o))]


def yaml_keys(text: str) -> list[str]:
    """Every key path of a YAML config snippet, down to lists and free-form dicts."""
    data = yaml.safe_load(text)
    keys: list[str] = []
    leaves, sections, open_ended = _schema()

    def walk(node, prefix):
        for name, value in node.items():
            key = f"{prefix}{name}"
            keys.append(key)
            if isinstance(value, dict) and key not in open_ended and key in sections:
                walk(value, key + ".")

    if isinstance(data, dict):
        walk(data, "")
    return keys


FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
# A dotted name whose first part is a config section (`train.learning_rate`, `eval.limit`).
SECTIONS = ("model", "data", "disperse", "train", "merge", "eval", "report", "monitor",
            "tracking", "frontier", "answer", "recipes")
DOTTED_KEY = re.compile(r"^(%s)(\.[a-z_0-9]+)+$" % "|".join(SECTIONS))


def quoted(text: str) -> tuple[list[str], list[str], list[str]]:
    """(dtm command lines, inline dotted config keys, YAML config snippets) of a Markdown page."""
    commands, keys, yamls = [], [], []
    prose = text
    for lang, body in FENCE.findall(text):
        prose = prose.replace(body, "")
        if lang == "yaml":
            yamls.append(body)
        for line in body.splitlines():
            line = line.strip()
            if line.startswith("dtm "):
                commands.append(line)
    for span in INLINE.findall(prose):
        span = span.strip()
        if span.startswith("dtm "):
            commands.append(span)
        name = span.split("=")[0].split(":")[0].strip()
        if DOTTED_KEY.match(name):
            keys.append(name)
    return commands, keys, yamls

"""A name -> implementation registry per pluggable kind (dispersal strategies, merge methods...).

Entries are registered from one explicit list per kind, as `"module:attr"` strings, so heavy
implementations are imported only when used. An unknown name fails with close matches and
the full list of valid names.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from dtmerge.errors import ConfigError


class Registry:
    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def check(self, name: str) -> None:
        """Raise the unknown-name error (close matches, valid names) without importing the
        implementation: validating a config must not load torch."""
        if name not in self._entries:
            close = difflib.get_close_matches(name, self.names(), n=2)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"unknown {self.kind} '{name}'.{hint} Valid: {', '.join(self.names())}"
            )

    def get(self, name: str) -> Any:
        self.check(name)
        module, attr = self._entries[name].split(":")
        return getattr(importlib.import_module(module), attr)


def lazy_exports(package: str, exports: dict[str, str]):
    """`__all__` and a module `__getattr__` (PEP 562) for a package whose public names live in
    submodules (`exports`: name -> module) and are imported on first use, so that importing the
    package does not import torch, lm-eval or transformers' trainer with it."""

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return sorted(exports), __getattr__

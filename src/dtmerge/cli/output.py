"""What `dtm` prints: stage lines, one progress line per job, warnings once at the end.

A run's terminal would hold more library chatter than results. `terminal.quiet_libraries`
turns progress bars off through the variables each library reads (so workers inherit them),
`WarningDigest` collects Python warnings while a command runs and prints each distinct one
once at the end, and `LibraryLogOnce` lets each library log message through once.
Deprecation notices raised inside installed libraries (not fixable here) are only counted,
unless --log-level debug asks to see them.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path


LEVELS = ("debug", "info", "warning", "error")


class LibraryLogOnce(logging.Filter):
    """Let each distinct library log message through once (lm-eval repeats the same task
    warnings for every model it scores: a frontier of 15 candidates printed them 45 times).
    dtmerge's own records always pass; `repeats` counts what was held back."""

    def __init__(self):
        super().__init__()
        self.seen: set[tuple[str, str]] = set()
        self.repeats = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] == "dtmerge":
            return True
        key = (record.name, record.getMessage())
        if key in self.seen:
            self.repeats += 1
            return False
        self.seen.add(key)
        return True


LIBRARY_LOG_ONCE = LibraryLogOnce()


def setup_logging(level: str = "info", quiet: bool = False) -> int:
    """Configure dtmerge's loggers (the monitor, alerts); returns the numeric level."""
    numeric = logging.WARNING if quiet else getattr(logging, level.upper())
    # libraries (lm-eval, transformers) log at INFO for every task: only their warnings show,
    # unless debug is asked for, and each distinct one once
    root = logging.DEBUG if numeric == logging.DEBUG else logging.WARNING
    logging.basicConfig(level=root, format="%(levelname)s %(name)s: %(message)s")
    if numeric != logging.DEBUG:
        for handler in logging.getLogger().handlers:
            if LIBRARY_LOG_ONCE not in handler.filters:
                handler.addFilter(LIBRARY_LOG_ONCE)
    logging.getLogger("dtmerge").setLevel(numeric)
    return numeric


def _from_library(filename: str) -> bool:
    parts = Path(filename).parts
    return "site-packages" in parts or "dist-packages" in parts


class WarningDigest:
    """Collect warnings while a command runs; `report()` prints each distinct one once."""

    def __init__(self, show_library_deprecations: bool = False):
        self.show_library_deprecations = show_library_deprecations
        self.seen: dict[tuple[str, str], int] = {}
        self.hidden = 0
        self._previous = None

    def __enter__(self) -> "WarningDigest":
        self._previous = warnings.showwarning
        self._filters = warnings.catch_warnings()
        self._filters.__enter__()
        warnings.simplefilter("always")  # count repeats here instead of letting Python drop them
        warnings.showwarning = self._record
        return self

    def __exit__(self, *exc) -> None:
        warnings.showwarning = self._previous
        self._filters.__exit__(*exc)

    def _record(self, message, category, filename, lineno, file=None, line=None) -> None:
        deprecation = issubclass(category, (DeprecationWarning, FutureWarning, PendingDeprecationWarning))
        if deprecation and _from_library(filename) and not self.show_library_deprecations:
            self.hidden += 1
            return
        key = (category.__name__, str(message).strip())
        self.seen[key] = self.seen.get(key, 0) + 1

    def report(self, stream=None) -> None:
        stream = stream or sys.stderr
        if self.seen:
            print(f"warnings ({len(self.seen)} distinct, each shown once):", file=stream)
            for (category, text), count in self.seen.items():
                times = f" (x{count})" if count > 1 else ""
                print(f"  {category}: {text.splitlines()[0][:300]}{times}", file=stream)
        if LIBRARY_LOG_ONCE.repeats:
            print(f"({LIBRARY_LOG_ONCE.repeats} repeats of library log messages already shown "
                  "were held back; --log-level debug shows every one)", file=stream)
            LIBRARY_LOG_ONCE.repeats = 0
        if self.hidden:
            print(f"({self.hidden} deprecation notices from installed libraries hidden; "
                  "--log-level debug shows them)", file=stream)

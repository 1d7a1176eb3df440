"""The terminal policy for libraries' output, shared by `dtm` and the processes it starts.

Libraries each draw their own progress bars (datasets per map, transformers per weight load,
lm-eval per request type) and repeat the same deprecation warning for every job. `dtm`'s own
process folds them (`quiet_libraries`, and the CLI's warning digest); pool workers are forked
from a fork server, not from that process, so they apply the same policy on entry
(`fold_library_output`, called by `executors.pool.in_pool_worker`).
"""

from __future__ import annotations

import os
import warnings

OWN_BAR_PREFIX = "[train]"  # dtmerge's per-job progress line (train/callbacks.py)
# Each library's own switch for its progress bars and advisory logging.
_QUIET_ENV = {
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # datasets .map/.filter bars
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # hub downloads; transformers' bars follow it
    "TQDM_DISABLE": "1",  # lm-eval's per-request bars (explicit disable=False still draws)
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
# Set by `dtm --log-level debug`: workers then show libraries' deprecation warnings too.
SHOW_LIBRARY_DEPRECATIONS = "DTMERGE_LIBRARY_DEPRECATIONS"


def quiet_libraries() -> None:
    """Turn library progress bars and advisory logs off, unless the user set the variable."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if os.environ.get("TQDM_DISABLE") == "1":
        _fold_explicit_bars()


def fold_library_output() -> None:
    """In a worker process: the bars folded as in `dtm`'s process (the variables came with
    the environment), and libraries' deprecation warnings dropped unless asked for (the CLI's
    digest, which hides them there, does not see a worker); dtmerge's own warnings show."""
    if os.environ.get("TQDM_DISABLE") == "1":
        _fold_explicit_bars()
    if os.environ.get(SHOW_LIBRARY_DEPRECATIONS) != "1":
        for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=r"(?!dtmerge)")


def _fold_explicit_bars() -> None:
    """lm-eval passes `disable=False` explicitly (rank 0), which TQDM_DISABLE cannot override;
    in this process only dtmerge's own job lines (desc "[train] ...") are drawn."""
    from tqdm import std

    original = std.tqdm.__init__
    if getattr(original, "_dtmerge_folded", False):
        return

    def init(self, *args, **kwargs):
        if not str(kwargs.get("desc") or "").startswith(OWN_BAR_PREFIX):
            kwargs["disable"] = True
        original(self, *args, **kwargs)

    init._dtmerge_folded = True
    std.tqdm.__init__ = init

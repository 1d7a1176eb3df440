"""Are we offline: the one answer every stage, the GGUF download and the dry run share.

It sits below `locate` and `gguf` (both ask it), so neither imports the other for it.
"""

from __future__ import annotations

import os

_TRUE = ("1", "true", "yes", "on")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in _TRUE

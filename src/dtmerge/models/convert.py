"""Convert a model directory's pickle weights (`*.bin`, `*.pt`) to safetensors, safely.

    python -m dtmerge.models.convert SRC_DIR DST_DIR

The merge reads safetensors only, and unpickling can run arbitrary code, so pickle weights are
converted once with torch's weights-only loader, which refuses anything but tensors (a
malicious pickle is refused with a clear message, not an UnpicklingError traceback). Config,
tokenizer and other small files are copied as they are; shared (tied) tensors are stored once.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from dtmerge.errors import DtmError, ModelError

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth")


def load_pickle_weights(path: Path) -> dict:
    """A state dict from a pickle file through the weights-only loader; ModelError if refused."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path}: refused to load these pickle weights: they hold something "
                         f"other than plain tensors ({first[:160]}), which could run code; get "
                         "safetensors weights from a source you trust") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state dict of tensors; cannot convert it")
    return state


def convert_to_safetensors(src: str | Path, dst: str | Path) -> Path:
    """Write `dst`: `src` with every pickle weight file as safetensors (atomic: all or nothing)."""
    from safetensors.torch import save_file

    from dtmerge.rundir import atomic_dir, atomic_write_json

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise ModelError(f"{src} is not a model directory")
    pickles = sorted(p for p in src.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if not pickles:
        raise ModelError(f"{src} has no pickle weights (*.bin, *.pt) to convert")
    if dst.exists():
        raise ModelError(f"{dst} already exists: give a new directory")
    with atomic_dir(dst) as tmp:
        for p in src.iterdir():
            pickle_index = p.name.endswith(".bin.index.json")
            if p.is_file() and p.suffix not in _PICKLE_SUFFIXES and not pickle_index:
                shutil.copy2(p, tmp / p.name)
        seen: set[tuple] = set()
        weight_map = {}
        for i, p in enumerate(pickles):
            unique = {}
            for name, tensor in load_pickle_weights(p).items():
                alias = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(),
                         tuple(tensor.shape), tensor.stride())
                if alias not in seen:  # tied weights are one tensor under two names: keep one
                    seen.add(alias)
                    unique[name] = tensor.contiguous()
            file = "model.safetensors" if len(pickles) == 1 else f"model-{i + 1:05d}.safetensors"
            save_file(unique, tmp / file, metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(unique, file))
        if len(pickles) > 1:
            atomic_write_json(tmp / "model.safetensors.index.json",
                              {"metadata": {}, "weight_map": weight_map})
    return dst


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m dtmerge.models.convert SRC_DIR DST_DIR", file=sys.stderr)
        return 2
    try:
        out = convert_to_safetensors(*argv)
    except DtmError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"converted {argv[0]} -> {out} (safetensors); use it as model.path")
    return 0


if __name__ == "__main__":
    sys.exit(main())

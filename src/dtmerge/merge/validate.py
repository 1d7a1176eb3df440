"""Up-front checks that the inputs of a merge fit together, before any heavy work.

The first mismatch is reported by name: the model, the tensor, and both shapes or dtypes.
"""

from __future__ import annotations

from pathlib import Path

from dtmerge.errors import MergeError
from dtmerge.merge.sources import FullModelSource


# config.json keys that fix tensor shapes besides the vocabulary.
_SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim")


def _text_config(cfg: dict) -> dict:
    return cfg.get("text_config") or cfg


def check_configs(base: FullModelSource, model: FullModelSource) -> None:
    a, b = base.config, model.config
    if a.get("architectures") != b.get("architectures"):
        raise MergeError(f"architectures differ: base {base.path} is {a.get('architectures')} but "
                         f"{model.path} is {b.get('architectures')}")
    va, vb = _text_config(a).get("vocab_size"), _text_config(b).get("vocab_size")
    if va != vb:
        raise MergeError(f"vocabulary sizes differ: base {base.path} has {va} tokens but "
                         f"{model.path} has {vb} (resized embeddings cannot be averaged)")
    for key in _SHAPE_KEYS:  # checked before the tensors so the message names the dimension
        xa, xb = _text_config(a).get(key), _text_config(b).get(key)
        if xa != xb:
            raise MergeError(f"{key} differs: base {base.path} has {xa} but {model.path} has "
                             f"{xb}: models of different sizes cannot be merged")


def check_tensors(base: FullModelSource, model: FullModelSource) -> None:
    names = base.names()
    for name in names:
        mine, theirs = base.info(name), model.info(name)
        if theirs is None:
            raise MergeError(f"{model.path} has no tensor '{name}' (the base {base.path} has it)")
        if mine.shape != theirs.shape:
            rows_differ = mine.shape[:1] != theirs.shape[:1]
            vocab = ("embed" in name or "lm_head" in name) and rows_differ
            what = " (vocabulary sizes differ)" if vocab else ""
            raise MergeError(f"tensor '{name}' has shape {list(theirs.shape)} in {model.path} "
                             f"but {list(mine.shape)} in the base {base.path}{what}")
        if mine.dtype != theirs.dtype:
            raise MergeError(f"tensor '{name}' is {theirs.dtype} in {model.path} but "
                             f"{mine.dtype} in the base {base.path}: save both in one dtype")
    known = set(names)
    for name in model.names():
        if name not in known:
            tied = " (the base ties it to the input embeddings)" if base.resolve(name) else ""
            raise MergeError(f"{model.path} has tensor '{name}', which the base {base.path} "
                             f"lacks{tied}")


def validate_inputs(base: FullModelSource, sources: list) -> None:
    """Raise MergeError naming the first incompatibility between the base and any input."""
    if not sources:
        raise MergeError("no models to merge: give at least one model or adapter")
    for src in sources:
        if src.kind == "full":
            check_configs(base, src)
            check_tensors(base, src)
        # LoRA modules were checked against the base's tensor names and shapes when opened.


def check_output_dir(out: str | Path, inputs: list[str | Path], overwrite: bool) -> None:
    """Refuse an output directory whose replacement would lose data.

    Never the current directory (or one holding it), never a directory that is, holds or lies
    inside an input of the same merge, and never an existing non-empty directory unless the
    user passed --overwrite.
    """
    target = Path(out).resolve()
    here = Path.cwd().resolve()
    if target == here or target in here.parents:
        raise MergeError(f"--out {out} is the current directory or holds it: give a new "
                         "directory for the merged model, e.g. --out merged")
    for item in inputs:
        source = Path(item).expanduser().resolve()
        if source == target or target in source.parents or source in target.parents:
            raise MergeError(f"--out {out} overlaps {item}, an input of this merge: writing "
                             "there would destroy or change it; choose another directory")
    if target.exists() and not target.is_dir():
        raise MergeError(f"--out {out} is a file, not a directory: choose another path")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise MergeError(f"--out {out} already exists and is not empty: choose a new directory, "
                         "or pass --overwrite to replace its contents")


def blame_non_finite(name: str, base_block, deltas, base: FullModelSource, sources: list) -> str:
    """The message for a merged block of tensor `name` holding NaN/inf: which input has them."""
    import torch

    if not torch.isfinite(base_block).all():
        culprit = f"the base model {base.path} holds NaN/inf values there"
    else:
        bad = [str(s.path) for s, d in zip(sources, deltas) if not torch.isfinite(d).all()]
        culprit = (f"input model(s) {', '.join(bad)} hold NaN/inf values there (a diverged "
                   "training?): retrain or drop them" if bad else
                   "every input is finite there, so the method or its parameters overflowed: "
                   "check merge.params and merge.weights")
    return f"merging tensor '{name}' gave NaN or inf values: {culprit}"

"""The last step of a merged block: base + scale * update, checked, for one or more outputs.

The engine computes a method's merged block once; `write_scaled` turns it into several
outputs (the frontier's update scales) with the same floating-point operations per output
as `finish_block` does for one, so each equals a merge at that single scale bit for bit.
"""

from __future__ import annotations

import math

import torch

from dtmerge.errors import MergeError
from dtmerge.merge.tensor_io import ShardWriter


class NonFiniteMerge(MergeError):
    """A merged block with NaN/inf values; the engine re-reads the inputs to name the culprit."""


def finish_block(name: str, merged: torch.Tensor, base: torch.Tensor | None, t: float | None,
             deltas_space: bool) -> torch.Tensor:
    """base + t * update from the method's merged block (in place: one output)."""
    if deltas_space:
        result = base.add_(merged if t is None else merged.mul_(t))
    else:
        result = merged if t is None else base.add_(merged.sub_(base).mul_(t))
    check_finite(name, result)
    return result


def write_scaled(name: str, merged: torch.Tensor, base: torch.Tensor | None,
                  scales: tuple, deltas_space: bool, writers: list[ShardWriter]) -> None:
    """Several outputs of one merged block, each with the same operations (and so the same
    bits) as `finish_block` for its scale; the scale-None output goes first, before the update is
    formed in place."""
    if not deltas_space:
        for t, writer in zip(scales, writers):
            if t is None:
                check_finite(name, merged)
                writer.write(name, merged)
        update = merged.sub_(base)
    else:
        update = merged
    scratch = torch.empty_like(update)
    for t, writer in zip(scales, writers):
        if t is None and not deltas_space:
            continue
        result = (torch.mul(update, t, out=scratch) if t is not None
                  else scratch.copy_(update)).add_(base)
        check_finite(name, result)
        writer.write(name, result)


def check_finite(name: str, result: torch.Tensor) -> None:
    # One cheap reduction instead of an isfinite pass: NaN/inf anywhere makes it non-finite.
    if not math.isfinite(float(result.sum())) and not torch.isfinite(result).all():
        raise NonFiniteMerge(f"merging tensor '{name}' gave NaN or inf values: check the "
                         "inputs for NaN weights and the method parameters")

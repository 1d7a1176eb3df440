"""Weighted averaging (the paper's merge) and task arithmetic."""

from __future__ import annotations

import torch
from peft.utils.merge_utils import task_arithmetic

from dtmerge.merge.methods.base import Block, MergeMethod, normalized


class Linear(MergeMethod):
    """sum_k w_k W_k / sum_k w_k (uniform 1/K by default): a model soup."""

    name = "linear"
    pretty_name = "Weighted average (model soup)"
    reference_url = "https://arxiv.org/abs/2203.05482"
    summary = "weighted average of the weights; the Disperse-Then-Merge default"
    space = "weights"
    linear_in_deltas = True

    def coefficients(self, weights: list[float], params: dict) -> list[float]:
        """The merged update as sum_k c_k delta_k (used to write the merge as an adapter)."""
        return [w / sum(weights) for w in weights]

    def combine(self, block: Block) -> torch.Tensor:
        # Sum the weighted models first and divide by the total weight once, in input order:
        # the same floating-point sequence as mergekit's normalised linear merge.
        out = block.tensors[0] * block.weights[0]
        for w, t in zip(block.weights[1:], block.tensors[1:]):
            out.add_(t * w)
        return out.div_(sum(block.weights))


class TaskArithmetic(MergeMethod):
    """W_0 + scaling * sum_k w_k (W_k - W_0)."""

    name = "task_arithmetic"
    pretty_name = "Task arithmetic"
    reference_url = "https://arxiv.org/abs/2212.04089"
    summary = "base + scaling * sum of weighted task vectors (normalize: divide by sum of weights)"
    space = "deltas"
    defaults = {"scaling": 1.0, "normalize": False}
    linear_in_deltas = True

    def coefficients(self, weights: list[float], params: dict) -> list[float]:
        total = sum(weights) if params["normalize"] else 1.0
        return [params["scaling"] * w / total for w in weights]

    def combine(self, block: Block) -> torch.Tensor:
        base = block.base
        w = (normalized(block.weights, base) if block.params["normalize"]
             else torch.tensor(block.weights, dtype=base.dtype))
        return task_arithmetic(block.tensors, w).mul_(block.params["scaling"])

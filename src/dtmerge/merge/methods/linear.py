"""Weighted averaging (the paper's merge) and task arithmetic."""

from __future__ import annotations

import torch

from dtmerge.merge.methods.base import Block, MergeMethod, normalized, per_model


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
        # sum_k(w_k W_k) / sum_k(w_k): the same floating-point sequence as mergekit's normalised
        # linear merge, so equal weights give bit-identical results (no multiply by 1/K).
        stacked, w = block.tensors, block.weights
        if len(set(w)) > 1:
            stacked.mul_(per_model(torch.tensor(w), stacked))
            return stacked.sum(0).div_(sum(w))
        return stacked.sum(0).div_(len(w))


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
        from peft.utils.merge_utils import task_arithmetic  # PEFT's operator, imported on use

        base = block.base
        w = (normalized(block.weights, base) if block.params["normalize"]
             else torch.tensor(block.weights, dtype=base.dtype))
        return task_arithmetic(list(block.tensors), w).mul_(block.params["scaling"])

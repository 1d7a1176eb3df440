"""TIES' magnitude selection (sampled bracket + one streamed pass) against a full stable sort."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dtmerge.merge.methods import sparse
from dtmerge.merge.methods.sparse import magnitude_cuts, prune_by_magnitude_
from dtmerge.merge.sources import LoraModule


def _reference(deltas: torch.Tensor, density: float) -> torch.Tensor:
    """Top-k |delta| per model by a full stable sort: ties kept in storage order."""
    out = torch.zeros_like(deltas)
    keep = max(1, int(density * deltas[0].numel()))
    for k, row in enumerate(deltas.reshape(len(deltas), -1)):
        order = np.argsort(-row.abs().numpy(), kind="stable")[:keep]
        out[k].view(-1)[order] = row[order]
    return out


def _pruned(deltas: torch.Tensor, density: float, block_rows: int, sample=True) -> torch.Tensor:
    """magnitude_cuts + prune_by_magnitude_ over uneven row blocks, as the engine runs them."""
    blocks = list(deltas.split(block_rows, dim=1))
    flat = deltas.reshape(len(deltas), -1)
    sampler = (lambda positions: flat[:, positions].clone()) if sample else None
    cuts = magnitude_cuts(deltas[0].numel(), lambda: (b.clone() for b in blocks), len(deltas),
                          density, sampler)
    out, offset = [], 0
    for b in blocks:
        b = b.clone()
        prune_by_magnitude_(b, cuts, offset)
        offset += b[0].numel()
        out.append(b)
    return torch.cat(out, dim=1)


def _cases():
    g = torch.Generator().manual_seed(0)
    n = (max(sparse.DIRECT_MAX, 1 << 18) // 64 + 37, 64)  # above DIRECT_MAX: the sampled path
    continuous = torch.randn(3, *n, generator=g) * 1e-3
    quantized = torch.randint(-6, 7, (3, *n), generator=g).float() * 0.25  # heavy ties, zeros
    bf16 = (torch.randn(3, *n, generator=g) * 1e-3).bfloat16().float()  # real-model ties
    mostly_zero = continuous * (torch.rand(3, *n, generator=g) < 0.3)
    small = torch.randn(2, 50, 7, generator=g)  # far smaller than the sample
    tiny_ties = torch.tensor([[[0.5], [-0.2], [0.2], [0.9], [-0.2], [0.2], [0.1], [0.0]]])
    return {"continuous": continuous, "quantized": quantized, "bf16": bf16,
            "mostly_zero": mostly_zero, "small": small, "tiny_ties": tiny_ties,
            "float64": quantized.double() / 3}


CASES = _cases()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("density", [0.5, 0.1, 1e-6])
def test_cut_equals_stable_topk(case, density):
    deltas = CASES[case]
    expected = _reference(deltas, density)
    for block_rows in (deltas.shape[1], 3, 1000):
        got = _pruned(deltas, density, block_rows)
        assert torch.equal(got, expected), (case, density, block_rows)
        keep = max(1, int(density * deltas[0].numel()))
        assert all(int((r != 0).sum()) <= keep for r in got)


def test_tied_values_keep_the_first_in_storage_order():
    x = CASES["tiny_ties"]
    got = _pruned(x, 0.5, 3).view(-1)
    assert torch.equal(got, torch.tensor([0.5, -0.2, 0.2, 0.9, 0, 0, 0, 0]))


@pytest.mark.parametrize("lie", ["constant", "huge", "tiny"])
def test_a_misleading_sample_still_gives_the_exact_cut(lie, monkeypatch):
    """A bracket that misses the k-th value triggers the second, gather-all pass."""
    deltas = CASES["quantized"]
    flat = deltas.reshape(3, -1)
    fake = {"constant": lambda p: torch.full((3, len(p)), 0.5),
            "huge": lambda p: flat[:, p] * 1e6,
            "tiny": lambda p: flat[:, p] * 1e-6}[lie]
    passes = []
    real = sparse._gather_pass
    monkeypatch.setattr(sparse, "_gather_pass", lambda *a: passes.append(1) or real(*a))
    blocks = list(deltas.split(1000, dim=1))
    cuts = magnitude_cuts(flat.shape[1], lambda: iter(blocks), 3, 0.5, fake)
    assert len(passes) == 2
    out = [b.clone() for b in blocks]
    offset = 0
    for b in out:
        prune_by_magnitude_(b, cuts, offset)
        offset += b[0].numel()
    assert torch.equal(torch.cat(out, dim=1), _reference(deltas, 0.5))


def test_the_sampled_pass_gathers_few_values(monkeypatch):
    """On continuous data the bracket holds a small share of the values, not all of them."""
    deltas = CASES["continuous"]
    gathered = []
    real = sparse._gather_pass

    def spy(*args):
        above, parts = real(*args)
        gathered.append(sum(len(v) for _, v in parts[0]))
        return above, parts

    monkeypatch.setattr(sparse, "_gather_pass", spy)
    flat = deltas.reshape(3, -1)
    magnitude_cuts(flat.shape[1], lambda: iter(deltas.split(1000, dim=1)), 3, 0.5,
                   lambda p: flat[:, p].clone())
    assert len(gathered) == 1 and gathered[0] < 0.15 * flat.shape[1]  # ~9% at this size


@pytest.mark.parametrize("fan_in_fan_out", [False, True])
def test_lora_update_at_positions(fan_in_fan_out):
    g = torch.Generator().manual_seed(1)
    module = LoraModule(torch.randn(4, 12, generator=g), torch.randn(9, 4, generator=g), 0.5,
                        fan_in_fan_out)
    full = module.delta().reshape(-1)
    positions = torch.randint(full.numel(), (50,), generator=g)
    assert torch.allclose(module.delta_at(positions), full[positions], atol=1e-6)

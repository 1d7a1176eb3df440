"""The compiled merge kernels give the eager operators' results bit for bit, and the engine's
read-ahead hands every block over in order."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from dtmerge.merge import merge_models
from dtmerge.merge.engine import READ_AHEAD, read_ahead
from dtmerge.merge.methods import kernels, sparse

from merge_zoo import load_dir
from test_ties_selection import CASES

pytest.importorskip("numba")


@pytest.fixture
def fused(monkeypatch):
    """Every block, however small, through the compiled kernels."""
    monkeypatch.setattr(kernels, "MIN_VALUES", 0)
    monkeypatch.delenv("DTM_MERGE_KERNELS", raising=False)


def _cuts(deltas, density, sample=True, block=1000):
    flat = deltas.reshape(len(deltas), -1)
    sampler = (lambda positions: flat[:, positions].clone()) if sample else None
    return sparse.magnitude_cuts(flat.shape[1], lambda: (b.clone() for b in flat.split(block, 1)),
                                 len(deltas), density, sampler)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("density", [0.5, 0.1])
def test_threshold_pass_equals_eager(case, density, monkeypatch):
    deltas = CASES[case]
    monkeypatch.setenv("DTM_MERGE_KERNELS", "0")
    eager = _cuts(deltas, density)
    monkeypatch.setattr(kernels, "MIN_VALUES", 0)
    monkeypatch.delenv("DTM_MERGE_KERNELS")
    assert _cuts(deltas, density) == eager
    assert _cuts(deltas, density, sample=False) == eager


@pytest.mark.parametrize("case", ["quantized", "bf16", "mostly_zero", "float64", "tiny_ties"])
@pytest.mark.parametrize("weights", ["uniform", "weighted"])
@pytest.mark.parametrize("sign_method", ["total", "frequency"])
def test_ties_kernel_equals_eager_operators(case, weights, sign_method):
    deltas = CASES[case]
    count = len(deltas)
    w = [1.0 / count] * count if weights == "uniform" else [0.5, 0.3, 0.2][:count]
    cuts = _cuts(deltas, 0.4)
    flat = deltas.reshape(count, -1)
    tie_blocks = 0
    for start in range(0, flat.shape[1], 1000):  # the blocks of the threshold pass, as in the engine
        block = flat[:, start:start + 1000]
        eager = block.clone()
        sparse.prune_by_magnitude_(eager, cuts, start)
        expected = sparse.sign_consensus_merge_(eager, w, sign_method)
        keep_above, ties = sparse.fused_cuts(cuts, start)
        tie_blocks += any(t >= 0 for t in ties)  # a model's last kept tie is in this block
        got, _ = kernels.ties_merge(block.clone(), keep_above,
                                    torch.tensor(w).to(block.dtype).tolist(),
                                    weights == "weighted", sign_method == "frequency",
                                    ties=ties)
        assert torch.equal(got, expected), (start, (got - expected).abs().max())
    if case in ("quantized", "tiny_ties"):
        assert tie_blocks  # the tie path was exercised


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bracket_kernel_compares_bit_patterns_as_the_values(dtype):
    """The gather's one unsigned compare of bit patterns keeps exactly lo <= |d| <= hi,
    with infinities, NaN, signed zeros, bounds at 0 and on values, NaN and empty brackets."""
    gen = torch.Generator().manual_seed(3)
    deltas = torch.randn(6, 5000, generator=gen, dtype=dtype)
    deltas[:, ::97] = 0.0
    deltas[:, 1::97] = -0.0
    deltas[:, 2::211] = float("inf")
    deltas[:, 3::211] = -float("inf")
    deltas[:, 4::307] = float("nan")
    magnitude = deltas.abs().numpy()
    on_value = float(magnitude[0, 10])
    nan = float("nan")
    lo = np.array([0.0, -1.0, on_value, 0.5, nan, 2.0])
    hi = np.array([np.inf, 0.0, on_value, 1.5, nan, 1.0])  # the last: hi < lo, nothing
    above = np.zeros(6, dtype=np.int64)
    got = kernels.BracketGatherer(lo, hi)(deltas, above)
    for k in range(6):
        low, high = (np.asarray(b, dtype=magnitude.dtype) for b in (lo[k], hi[k]))
        row = magnitude[k]
        assert np.array_equal(got[k], row[(row >= low) & (row <= high)]), k
        assert above[k] == np.count_nonzero(row > high), k
    assert len(got[0]) == np.count_nonzero(~np.isnan(magnitude[0]))  # every non-NaN, inf too
    assert len(got[1]) == np.count_nonzero(magnitude[1] == 0)  # +0 and -0
    assert len(got[4]) == len(got[5]) == 0


def test_ties_kernel_keeps_nan():
    deltas = torch.randn(3, 10)
    deltas[1, 4] = float("nan")
    deltas[2, 7] = float("inf")
    got, bad = kernels.ties_merge(deltas, [0.1, 0.1, 0.1], [1.0] * 3, False, False)
    assert bad == 2
    assert torch.isnan(got[4]) and torch.isnan(got[7])
    assert torch.isfinite(got[[0, 1, 2, 3, 5, 6, 8, 9]]).all()


@pytest.mark.parametrize("which", ["full", "lora"])
@pytest.mark.parametrize("method,params", [
    ("ties", {"density": 0.3}), ("ties", {"density": 0.5, "majority_sign": "frequency"}),
    ("dare_linear", {"density": 0.4, "seed": 3}),
    ("dare_ties", {"density": 0.6, "majority_sign": "frequency"})])
def test_fused_merge_equals_eager_merge(zoo, tmp_path, monkeypatch, which, method, params):
    """The whole engine, small uneven blocks included, with and without the kernels."""
    for name, setting in (("eager", "0"), ("fused", "1")):
        monkeypatch.setenv("DTM_MERGE_KERNELS", setting)
        monkeypatch.setattr(kernels, "MIN_VALUES", 0)
        merge_models(zoo["base"], zoo[which], tmp_path / name, method=method, params=params,
                     weights=[0.5, 0.2, 0.3], block_elements=700)
    eager, fused = load_dir(tmp_path / "eager"), load_dir(tmp_path / "fused")
    assert all(torch.equal(eager[n], fused[n]) for n in eager)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dare_kernels_equal_the_numpy_path(dtype, monkeypatch):
    from dtmerge.merge.methods.base import Block

    deltas = torch.randn(4, 300, 70, dtype=dtype)
    deltas[1, 3, 5] = float("nan")  # shows whether kept or dropped, in both paths
    params = {"density": 0.3, "seed": 5}
    results = {}
    for setting in ("0", "1"):
        monkeypatch.setenv("DTM_MERGE_KERNELS", setting)
        monkeypatch.setattr(kernels, "MIN_VALUES", 0)
        block = Block("w", (100, 400), None, deltas.clone(), [0.25] * 4, params)
        summed = sparse.dare_weighted_sum(block, [0.1, 0.2, 0.3, 0.4])
        dropped = sparse.dare_drop_(Block("w", (100, 400), None, deltas.clone(), [0.25] * 4,
                                          params))
        results[setting] = (summed, dropped)
    for eager, fused in zip(*results.values()):
        assert torch.equal(eager.nan_to_num(7.0), fused.nan_to_num(7.0))
        assert torch.isnan(fused).any()


def test_warm_loads_every_kernel():
    kernels.warm()  # compiles or loads fp32 and fp64 variants without error
    assert kernels.enabled(kernels.MIN_VALUES) is (kernels.numba is not None)


def test_read_ahead_hands_blocks_over_in_order_in_rotating_slots():
    blocks = list(range(7))
    seen = []

    def read(rows, slot):
        return rows, slot

    with ThreadPoolExecutor(READ_AHEAD) as pool:
        for rows, slot in read_ahead(pool, blocks, read):
            seen.append((rows, slot))
    assert seen == [(i, i % (READ_AHEAD + 1)) for i in range(7)]


def test_read_ahead_stops_cleanly_and_passes_errors_on():
    def read(rows, slot):
        if rows == 3:
            raise OSError("disk gone")
        return rows

    with ThreadPoolExecutor(READ_AHEAD) as pool:
        taken = []
        with pytest.raises(OSError, match="disk gone"):
            for rows in read_ahead(pool, list(range(6)), read):
                taken.append(rows)
        assert taken == [0, 1, 2]
        early = read_ahead(pool, list(range(6)), lambda rows, slot: rows)
        assert next(early) == 0
        early.close()  # a consumer that stops: the read in flight ends, nothing leaks
    assert np.array_equal(taken, [0, 1, 2])

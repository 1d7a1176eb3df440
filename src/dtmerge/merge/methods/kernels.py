"""Fused loops for TIES and DARE, compiled by numba when it is installed (`dtmerge[fast]`).

The eager torch/numpy operators in `sparse.py` make one pass over a (K, block) stack per
operation: TIES' prune, sign election and disjoint mean are about ten passes, its threshold
pass five more. Here each is one loop that reads every value once and keeps the rest in
registers: on the 4 x 268M-value benchmark models, 0.9 ns per value single-threaded against
about 4 for the eager chain. No library has these (PEFT's and mergekit's operators are the
eager chains), so they are written here, and every kernel is tested against the eager
operator it replaces, bit for bit.

The kernels release the GIL (the engine reads the next block meanwhile) and run on one
thread. They are compiled on first use and cached on disk (numba's `cache=True`: a fresh
process loads them in about 0.5 s), and used only on blocks of at least `MIN_VALUES` values,
where the compiled loop pays for its call; tiny merges and machines without numba run the
eager path. `DTM_MERGE_KERNELS=0` turns them off.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

try:  # optional: the `fast` extra
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

MIN_VALUES = 1 << 16  # a (K, block) stack of fewer values runs the eager operators


def available() -> bool:
    """numba is installed and DTM_MERGE_KERNELS does not turn the kernels off."""
    return numba is not None and os.environ.get("DTM_MERGE_KERNELS", "1") != "0"


def enabled(values: int) -> bool:
    """Whether a stack of `values` values goes through the compiled kernels."""
    return values >= MIN_VALUES and available()


def _jit(fn):
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn) if numba else fn


CHUNK = 1024  # values per model a kernel keeps in its scratch rows (in the L1/L2 cache)


@_jit
def _ties_merge(buf, count, stride, n, keep_above, weights, weighted, frequency, out):  # pragma: no cover
    """TIES on one block, as `prune_by_magnitude_` + `sign_consensus_merge_` compute it:
    entries with |d| <= keep_above[k] are dropped (NaN is kept, as hardshrink keeps it),
    weights multiply the kept values when `weighted`, the elected sign is + where the sum
    (of values, or of their signs with `frequency`) is >= 0, and the mean is over the models
    agreeing with it (their weights' sum, or their count). Sums run over the models in order,
    like torch's sum over the first dimension, so results equal the eager operator's.

    Chunk by chunk, each model's row in an inner loop of selects (no branches), which LLVM
    vectorises; a loop over the models inside the loop over values would not be. (Each row
    is sliced first: an index k * stride + j might be negative for all LLVM knows, and its
    wrap-around check would stop the vectorising.)"""
    dtype = buf.dtype
    zero, one = dtype.type(0.0), dtype.type(1.0)
    kept = np.empty((count, CHUNK), dtype=dtype)
    elected = np.empty(CHUNK, dtype=dtype)
    merged = np.empty(CHUNK, dtype=dtype)
    divisor = np.empty(CHUNK, dtype=dtype)
    bad = np.empty(CHUNK, dtype=np.bool_)
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        elected[:size] = zero
        merged[:size] = zero
        divisor[:size] = zero
        bad[:size] = False
        for k in range(count):
            cut, w = keep_above[k], weights[k]
            row = buf[k * stride + start:k * stride + start + size]
            for j in range(size):
                d = row[j]
                bad[j] |= not abs(d) < math.inf
                p = (d * w if weighted else d) if not abs(d) <= cut else zero
                kept[k, j] = p
                if frequency:
                    elected[j] += one if p > 0 else (-one if p < 0 else zero)
                else:
                    elected[j] += p
        for k in range(count):
            w = weights[k] if weighted else one
            for j in range(size):
                v = kept[k, j] * (one if elected[j] >= 0 else -one)
                agree = v > 0
                merged[j] += v if agree else zero
                divisor[j] += w if agree else zero
        for j in range(size):
            sign = one if elected[j] >= 0 else -one
            den = divisor[j] if divisor[j] != 0 else one
            out[start + j] = math.nan if bad[j] else (merged[j] * sign) / den


@_jit
def _bracket_pass(buf, bits, count, stride, n, hi, lo_bits, width, gathered, inside,
                  above):  # pragma: no cover
    """Per model k: add to above[k] the count of |d| > hi[k]; write the |d| in the bracket
    to gathered[k, :inside[k]] in storage order. NaN values count nowhere.

    `bits` is `buf` seen as unsigned integers of its width. For |d| >= 0 (sign bit cleared)
    the bit patterns order as the values do, NaN above inf, so lo <= |d| <= hi is one
    unsigned compare, (pattern - lo's pattern) <= width: two float compares and an `and`
    fewer per value in the serial loop (25% of the pass here). `bracket_bits` gives
    lo_bits and width, and width = -1 (all ones) for "nothing inside"."""
    none = width.dtype.type(-1)
    magnitude = none >> width.dtype.type(1)  # every bit but the sign bit
    for k in range(count):
        high, low, span = hi[k], lo_bits[k], width[k]
        row, into = buf[k * stride:k * stride + n], gathered[k]
        pattern = bits[k * stride:k * stride + n]
        over = 0
        for j in range(n):  # vectorised: a count
            over += abs(row[j]) > high
        filled = 0
        if span != none:
            for j in range(n):  # serial in `filled`, but without a branch to mispredict
                into[filled] = abs(row[j])  # written always, kept only when inside
                filled += ((pattern[j] & magnitude) - low) <= span
        above[k] += over
        inside[k] = filled


@_jit
def _splitmix_top32(key, index):  # pragma: no cover
    """Top 32 bits of SplitMix64's output number `index` (0-based) for seed `key`."""
    x = key + np.uint64(index + 1) * np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (x ^ (x >> np.uint64(31))) >> np.uint64(32)


@_jit
def _dare_sum(buf, count, stride, n, keys, offset, threshold, coeffs, out):  # pragma: no cover
    """out = sum_k c_k * (d_k * keep_k), models in order, with keep_k = 1 where the draw of
    the entry's position (`offset` + j in its tensor) is below `threshold`, else 0 (so a
    dropped NaN still shows, as in the numpy path)."""
    dtype = buf.dtype
    zero, one = dtype.type(0.0), dtype.type(1.0)
    limit = np.uint64(threshold)
    out[:] = zero
    for k in range(count):
        key, c = keys[k], coeffs[k]
        row = buf[k * stride:k * stride + n]
        for j in range(n):
            keep = one if _splitmix_top32(key, offset + j) < limit else zero
            out[j] += (row[j] * keep) * c


@_jit
def _dare_drop(buf, count, stride, n, keys, offset, threshold, density):  # pragma: no cover
    """In place: d_k = (d_k * keep_k) / density (see `_dare_sum` for keep_k)."""
    dtype = buf.dtype
    zero, one = dtype.type(0.0), dtype.type(1.0)
    limit = np.uint64(threshold)
    for k in range(count):
        key = keys[k]
        row = buf[k * stride:k * stride + n]
        for j in range(n):
            keep = one if _splitmix_top32(key, offset + j) < limit else zero
            row[j] = (row[j] * keep) / density


def _rows(stack: torch.Tensor) -> tuple[np.ndarray, int, int, int]:
    """A (K, *block) stack as the kernels take it: one flat contiguous array holding the K
    rows `stride` values apart (a block of a tensor read whole is a column slice of a
    (K, numel) array; indexing it as 2-D with strides would keep LLVM from vectorising),
    K and the values per row."""
    flat = stack.reshape(stack.shape[0], -1)
    if flat.shape[1] and flat.stride(-1) != 1:
        flat = flat.contiguous()
    count, n = flat.shape
    stride = flat.stride(0) if count > 1 else n
    span = (count - 1) * stride + n if count and n else 0
    return torch.as_strided(flat, (span,), (1,)).numpy(), count, stride, n


def dare_sum(deltas: torch.Tensor, keys: np.ndarray, offset: int, threshold: int,
             coeffs: list[float]) -> torch.Tensor:
    """DARE-linear's weighted sum of a (K, *block) stack starting at flat `offset` of its
    tensor, masks drawn in the loop (see `sparse.dare_keep`)."""
    buf, count, stride, n = _rows(deltas)
    out = np.empty(n, dtype=buf.dtype)
    _dare_sum(buf, count, stride, n, keys, offset, threshold,
              np.asarray(coeffs, dtype=buf.dtype), out)
    return torch.from_numpy(out).view(deltas.shape[1:])


def dare_drop(deltas: torch.Tensor, keys: np.ndarray, offset: int, threshold: int,
              density: float) -> None:
    """DARE's drop and rescale of a (K, *block) stack, in place."""
    buf, count, stride, n = _rows(deltas)
    _dare_drop(buf, count, stride, n, keys, offset, threshold, buf.dtype.type(density))
    if n and buf.ctypes.data != deltas.data_ptr():  # `_rows` had to copy: write back
        deltas.copy_(torch.from_numpy(buf).view(deltas.shape))


def ties_merge(deltas: torch.Tensor, keep_above: list[float], weights: list[float],
               weighted: bool, frequency: bool) -> torch.Tensor:
    """The TIES merge of a (K, *block) stack of task vectors, one fused loop (see
    `_ties_merge`); `keep_above[k]` < 0 keeps every entry of model k."""
    buf, count, stride, n = _rows(deltas)
    dtype = buf.dtype
    out = np.empty(n, dtype=dtype)
    _ties_merge(buf, count, stride, n, np.asarray(keep_above, dtype=dtype),
                np.asarray(weights, dtype=dtype), weighted, frequency, out)
    return torch.from_numpy(out).view(deltas.shape[1:])


def bracket_bits(lo: np.ndarray, hi: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Per model, lo's bit pattern and hi's minus it, as unsigned integers of `dtype`'s width,
    so that lo <= |d| <= hi exactly when (pattern(|d|) - lo_bits) <= width (unsigned).
    Bounds are rounded to `dtype` first (exact: they are values of it). A bound <= 0 is 0
    (|d| is never below it); an empty or NaN bracket gets width all ones ("nothing")."""
    unsigned = np.dtype(f"u{np.dtype(dtype).itemsize}")
    low = np.maximum(lo.astype(dtype), 0).astype(dtype)  # also turns -0.0 into +0.0
    high = hi.astype(dtype)
    empty = ~(low <= high)  # NaN bounds or high below low
    high = np.where(empty, low, high).astype(dtype)
    lo_bits = low.view(unsigned).copy()
    width = (high.view(unsigned) - lo_bits).astype(unsigned)
    width[empty] = np.iinfo(unsigned).max
    return lo_bits, width


class BracketGatherer:
    """The threshold pass of `magnitude_cuts` on a reused (K, block) buffer."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray):
        self.lo, self.hi = lo, hi
        self.gathered = None
        self.inside = np.zeros(len(lo), dtype=np.int64)
        self._bits: dict = {}  # dtype -> the bounds as `_bracket_pass` compares them

    def __call__(self, block: torch.Tensor, above: np.ndarray) -> list[np.ndarray]:
        """Add the counts above hi to `above`; returns, per model, the |d| in [lo, hi]."""
        buf, count, stride, n = _rows(block)
        if self.gathered is None or self.gathered.shape[1] < n or self.gathered.dtype != buf.dtype:
            self.gathered = np.empty((count, n), dtype=buf.dtype)
        lo_bits, width = self._bits.get(buf.dtype) or self._bits.setdefault(
            buf.dtype, bracket_bits(self.lo, self.hi, buf.dtype))
        _bracket_pass(buf, buf.view(lo_bits.dtype), count, stride, n, self.hi.astype(buf.dtype),
                      lo_bits, width, self.gathered, self.inside, above)
        return [self.gathered[k, :self.inside[k]].copy() for k in range(count)]


def warm(dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)) -> None:
    """Compile (or load from numba's cache) every kernel for these dtypes now: a fixed cost
    of 50-70 MB of memory (LLVM and numba's runtime) and, cached, about half a second, which
    the merge engine pays in its read thread while the first tensor is sampled."""
    if not available():
        return
    for dtype in dtypes:  # numba compiles per argument types, not per flag value: one call each
        block = torch.zeros(2, 4, dtype=dtype)
        ties_merge(block, [0.0, 0.0], [0.5, 0.5], False, False)
        BracketGatherer(np.zeros(2), np.ones(2))(block, np.zeros(2, dtype=np.int64))
        keys = np.zeros(2, dtype=np.uint64)
        dare_sum(block, keys, 0, 1 << 31, [0.5, 0.5])
        dare_drop(block, keys, 0, 1 << 31, 0.5)

"""Fused loops for TIES and DARE, compiled by numba when it is installed (`dtmerge[fast]`).

The eager torch/numpy operators in `sparse.py` make one pass over a (K, block) stack per
operation: TIES' prune, sign election and disjoint mean are about ten passes, its threshold
pass five more. Here each is one loop that reads every value once and keeps the rest in
registers: on the 4 x 268M-value benchmark models, 0.9 ns per value single-threaded against
about 4 for the eager chain. No library has these (PEFT's and mergekit's operators are the
eager chains), so they are written here, and every kernel is tested against the eager
operator it replaces, bit for bit.

The TIES and DARE-linear merges and the threshold pass also take rows of model weights with
the base (d = w - base inside the loop) and write base + update, the same floating-point
operations as the engine's separate passes, so a block is read and written once.

The kernels release the GIL (the engine runs a block in each of its worker threads) and run
on one thread. They are compiled on first use and cached on disk (numba's `cache=True`: a
fresh process loads them in about 0.4 s, the engine in a thread of its own from the start of
a merge while the inputs are opened and the first blocks read, `load_in_background`), and
used only on blocks of at least `MIN_VALUES` values, where the compiled loop pays for its
call; tiny merges and machines without numba run the eager path. `DTM_MERGE_KERNELS=0`
turns them off.
"""

from __future__ import annotations

import math
import os
import threading

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
    """Whether a stack of `values` values goes through the compiled kernels. While
    `load_in_background` loads them this waits for it rather than run the eager operators
    (same bits): those cost 3-10x more per value (DARE's numpy draws the most), and beside
    the load they took the CPU it needed. Measured on a fresh process's DARE merge of
    4 x 44M values, 2 shared cores: 1.39-1.51 s with eager blocks meanwhile, 0.93-1.11 s
    waiting; TIES the same either way."""
    if values < MIN_VALUES or not available():
        return False
    _loaded.wait()
    return True


_loaded = threading.Event()  # set while no `load_in_background` is running
_loaded.set()
# A process forked while the kernels load has no loading thread: it loads them on first use.
os.register_at_fork(after_in_child=_loaded.set)


def _jit(fn):
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn) if numba else fn


CHUNK = 1024  # values per model a kernel keeps in its scratch rows (in the L1/L2 cache)


@_jit
def _ties_merge(buf, raw, base, count, stride, n, keep_above, ties, weights, weighted,
                frequency, scaling, scaled, finish, out):  # pragma: no cover
    """TIES on one block, as `prune_by_magnitude_` + `sign_consensus_merge_` compute it:
    entries with |d| <= keep_above[k] are dropped (NaN is kept, as hardshrink keeps it),
    except, where ties[k] >= 0 (the block holding model k's last kept tie), the first ties[k]
    entries with |d| == keep_above[k], in storage order (counted down in `ties`),
    weights multiply the kept values when `weighted`, the elected sign is + where the sum
    (of values, or of their signs with `frequency`) is >= 0, and the mean is over the models
    agreeing with it (their weights' sum, or their count). Sums run over the models in order,
    like torch's sum over the first dimension, so results equal the eager operator's.

    Fused around it, each the same floating-point operation as the engine's separate pass:
    d = w - base for the rows with `raw[k]` (model weights, not task vectors; the others
    subtract +0.0, which leaves every value as it is, -0.0 and NaN included), the merged
    value times `scaling` when `scaled`, and base + merged when `finish`. `base` is read
    only for those (pass any array of n values otherwise). Returns how many written values
    are NaN or infinite.

    Chunk by chunk, each model's row in an inner loop of selects (no branches), which LLVM
    vectorises; a loop over the models inside the loop over values would not be. (Each row
    is sliced first: an index k * stride + j might be negative for all LLVM knows, and its
    wrap-around check would stop the vectorising.)"""
    dtype = buf.dtype
    zero, one, nan = dtype.type(0.0), dtype.type(1.0), dtype.type(math.nan)  # (math.nan
    kept = np.empty((count, CHUNK), dtype=dtype)  # would make m a float64: double rounding)
    elected = np.empty(CHUNK, dtype=dtype)
    merged = np.empty(CHUNK, dtype=dtype)
    divisor = np.empty(CHUNK, dtype=dtype)
    # NaN where some d is NaN or infinite (d * 0 is NaN exactly then, and stays so in the
    # sum): float arithmetic, where a bool array's |= cost the loop 14% (byte packing).
    bad = np.empty(CHUNK, dtype=dtype)
    zeros = np.zeros(CHUNK, dtype=dtype)  # what a task-vector row subtracts: d - 0 == d
    nonfinite = 0
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        elected[:size] = zero
        merged[:size] = zero
        divisor[:size] = zero
        bad[:size] = zero
        b = base[start:start + size]
        for k in range(count):
            cut, w = keep_above[k], weights[k]
            row = buf[k * stride + start:k * stride + start + size]
            sub = b if raw[k] else zeros[:size]
            if ties[k] < 0:
                for j in range(size):
                    d = row[j] - sub[j]
                    bad[j] += d * zero
                    p = (d * w if weighted else d) if not abs(d) <= cut else zero
                    kept[k, j] = p
                    if frequency:
                        elected[j] += one if p > 0 else (-one if p < 0 else zero)
                    else:
                        elected[j] += p
                continue
            left = ties[k]  # a serial count: a loop of its own, for one block per model
            for j in range(size):
                d = row[j] - sub[j]
                bad[j] += d * zero
                keep = not abs(d) <= cut
                if left > 0 and abs(d) == cut:
                    keep = True
                    left -= 1
                p = (d * w if weighted else d) if keep else zero
                kept[k, j] = p
                if frequency:
                    elected[j] += one if p > 0 else (-one if p < 0 else zero)
                else:
                    elected[j] += p
            ties[k] = left
        for k in range(count):
            w = weights[k] if weighted else one
            for j in range(size):
                v = kept[k, j] * (one if elected[j] >= 0 else -one)
                agree = v > 0
                merged[j] += v if agree else zero
                divisor[j] += w if agree else zero
        o = out[start:start + size]
        for j in range(size):
            sign = one if elected[j] >= 0 else -one
            den = divisor[j] if divisor[j] != 0 else one
            m = nan if bad[j] != bad[j] else (merged[j] * sign) / den
            if scaled:
                m = m * scaling
            if finish:
                m = b[j] + m
            o[j] = m
            nonfinite += not abs(m) < math.inf
    return nonfinite


@_jit
def _bracket_pass(buf, raw, base, count, stride, n, hi, lo_bits, width, gathered, inside,
                  above):  # pragma: no cover
    """Per model k: add to above[k] the count of |d| > hi[k]; write the |d| in the bracket
    to gathered[k, :inside[k]] in storage order. NaN values count nowhere. d = w - base on
    the rows with `raw[k]`, the row itself on the others (as `_ties_merge`).

    The |d| go to a scratch row (gathered[count]), whose bit patterns, seen as unsigned integers of its width,
    order as the values do (NaN above inf, the sign bit cleared), so lo <= |d| <= hi is one
    unsigned compare, (pattern - lo's pattern) <= width: two float compares and an `and`
    fewer per value in the serial loop. `bracket_bits` gives lo_bits and width, and
    width = -1 (all ones) for "nothing inside"."""
    none = width.dtype.type(-1)
    magnitude = none >> width.dtype.type(1)  # every bit but the sign bit
    mag = gathered[count]  # the scratch row
    pattern = mag.view(width.dtype)
    for k in range(count):
        high, low, span = hi[k], lo_bits[k], width[k]
        row, into = buf[k * stride:k * stride + n], gathered[k]
        over = 0
        if raw[k]:
            for j in range(n):  # vectorised
                m = abs(row[j] - base[j])
                mag[j] = m
                over += m > high
        else:
            for j in range(n):
                m = abs(row[j])
                mag[j] = m
                over += m > high
        filled = 0
        if span != none:
            for j in range(n):  # serial in `filled`, but without a branch to mispredict
                # The pattern is loaded before the store, which may alias it for all LLVM
                # knows (both rows of `gathered`) and would force a reload after it: the
                # whole pass took 0.62-0.68 ns per value against 0.85-0.9 in that order.
                bits = pattern[j]
                into[filled] = mag[j]  # written always, kept only when inside
                filled += ((bits & magnitude) - low) <= span
        above[k] += over
        inside[k] = filled


GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment


@_jit
def _splitmix_top32(state):  # pragma: no cover
    """Top 32 bits of SplitMix64's output for `state` (seed + (index + 1) * GOLDEN), as an
    int64 (a signed compare: the unsigned one costs two more vector ops on AVX2). The
    callers step `state` by GOLDEN per entry instead of multiplying the index: LLVM did not
    turn that product into an induction, and it was a third of the 64-bit multiplies, which
    AVX2 emulates with three 32-bit ones each (the DARE loop ran 1.4 ns per value, 0.95
    with the step). Bits 32-63 of x ^ (x >> 31) are those of x ^ (x >> 63)."""
    x = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.int64((x >> np.uint64(32)) ^ (x >> np.uint64(63)))


@_jit
def _dare_sum(buf, raw, base, count, stride, n, keys, offset, threshold, coeffs, finish,
              out):  # pragma: no cover
    """out = sum_k c_k * (d_k * keep_k), models in order, with keep_k = 1 where the draw of
    the entry's position (`offset` + j in its tensor) is below `threshold`, else 0 (so a
    dropped NaN still shows, as in the numpy path); d = w - base on the rows with `raw[k]`,
    and base + out when `finish` (as `_ties_merge`). Returns the count of NaN/inf written."""
    dtype = buf.dtype
    zero, one = dtype.type(0.0), dtype.type(1.0)
    limit = np.int64(threshold)
    acc = np.empty(CHUNK, dtype=dtype)
    zeros = np.zeros(CHUNK, dtype=dtype)  # what a task-vector row subtracts: d - 0 == d
    nonfinite = 0
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        acc[:size] = zero
        b = base[start:start + size]
        for k in range(count):
            c = coeffs[k]
            row = buf[k * stride + start:k * stride + start + size]
            state = keys[k] + np.uint64(offset + start + 1) * GOLDEN
            sub = b if raw[k] else zeros[:size]
            for j in range(size):
                keep = one if _splitmix_top32(state) < limit else zero
                state += GOLDEN
                acc[j] += ((row[j] - sub[j]) * keep) * c
        o = out[start:start + size]
        for j in range(size):
            m = b[j] + acc[j] if finish else acc[j]
            o[j] = m
            nonfinite += not abs(m) < math.inf
    return nonfinite


@_jit
def _dare_drop(buf, count, stride, n, keys, offset, threshold, density):  # pragma: no cover
    """In place: d_k = (d_k * keep_k) / density (see `_dare_sum` for keep_k)."""
    dtype = buf.dtype
    zero, one = dtype.type(0.0), dtype.type(1.0)
    limit = np.int64(threshold)
    for k in range(count):
        state = keys[k] + np.uint64(offset + 1) * GOLDEN
        row = buf[k * stride:k * stride + n]
        for j in range(n):
            keep = one if _splitmix_top32(state) < limit else zero
            state += GOLDEN
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


def _flat(tensor: torch.Tensor | None, like: np.ndarray) -> np.ndarray:
    """A 1-D contiguous block (the base, an output) as a kernel takes it; `like` stands in
    for an absent base (the kernels then never read it; the output would be the wrong
    stand-in: LLVM cannot tell it from the base, and the TIES loop ran 2x slower)."""
    if tensor is None:
        return like
    return tensor.reshape(-1).numpy()


def _raw_flags(raw: list[bool] | None, count: int) -> np.ndarray:
    return np.zeros(count, np.bool_) if raw is None else np.asarray(raw, dtype=np.bool_)


def dare_sum(deltas: torch.Tensor, keys: np.ndarray, offset: int, threshold: int,
             coeffs: list[float], *, base: torch.Tensor | None = None,
             raw: list[bool] | None = None, out: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, int]:
    """DARE-linear's weighted sum of a (K, *block) stack starting at flat `offset` of its
    tensor, masks drawn in the loop (see `sparse.dare_keep`), and how many of its values are
    NaN/inf. With `base`: rows with `raw[k]` hold model weights (their task vector is taken
    in the loop) and the result is base + the sum."""
    buf, count, stride, n = _rows(deltas)
    result = torch.empty(deltas.shape[1:], dtype=deltas.dtype) if out is None else out
    flat = _flat(result, buf)
    bad = _dare_sum(buf, _raw_flags(raw, count), _flat(base, buf), count, stride, n, keys,
                    offset, threshold, np.asarray(coeffs, dtype=buf.dtype), base is not None,
                    flat)
    return result.view(deltas.shape[1:]), int(bad)


def dare_drop(deltas: torch.Tensor, keys: np.ndarray, offset: int, threshold: int,
              density: float) -> None:
    """DARE's drop and rescale of a (K, *block) stack, in place."""
    buf, count, stride, n = _rows(deltas)
    _dare_drop(buf, count, stride, n, keys, offset, threshold, buf.dtype.type(density))
    if n and buf.ctypes.data != deltas.data_ptr():  # `_rows` had to copy: write back
        deltas.copy_(torch.from_numpy(buf).view(deltas.shape))


def ties_merge(deltas: torch.Tensor, keep_above: list[float], weights: list[float],
               weighted: bool, frequency: bool, *, ties: list[int] | None = None,
               scaling: float = 1.0, base: torch.Tensor | None = None,
               raw: list[bool] | None = None, out: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, int]:
    """The TIES merge of a (K, *block) stack of task vectors, one fused loop (see
    `_ties_merge`); `keep_above[k]` < 0 keeps every entry of model k, and `ties[k]` >= 0
    keeps that many entries at |d| == keep_above[k] too (default: none). Returns the merged
    block times `scaling` and how many of its values are NaN/inf; with `base`, rows with
    `raw[k]` hold model weights and the result is base + the merged block."""
    buf, count, stride, n = _rows(deltas)
    dtype = buf.dtype
    result = torch.empty(deltas.shape[1:], dtype=deltas.dtype) if out is None else out
    flat = _flat(result, buf)
    tie_counts = np.full(count, -1, np.int64) if ties is None else np.array(ties, np.int64)
    bad = _ties_merge(buf, _raw_flags(raw, count), _flat(base, buf), count, stride, n,
                      np.asarray(keep_above, dtype=dtype), tie_counts,
                      np.asarray(weights, dtype=dtype), weighted, frequency,
                      dtype.type(scaling), scaling != 1.0, base is not None, flat)
    return result.view(deltas.shape[1:]), int(bad)


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
    """The threshold pass of `magnitude_cuts`, one (K, block) stack at a time. Holds only
    the bounds: calls from several threads at once are safe."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray):
        self.lo, self.hi = lo, hi
        self._bits: dict = {}  # dtype -> the bounds as `_bracket_pass` compares them

    def __call__(self, block: torch.Tensor, above: np.ndarray, *,
                 base: torch.Tensor | None = None,
                 raw: list[bool] | None = None,
                 scratch: dict | None = None) -> list[np.ndarray]:
        """Add the counts above hi to `above`; returns, per model, the |d| in [lo, hi]. With
        `base`, rows with `raw[k]` hold model weights, d = w - base. `scratch`: a dict kept
        by the caller between calls, holding the reused gather buffer (a new one per call is
        a fresh mapping of K block sizes, page-faulted in)."""
        buf, count, stride, n = _rows(block)
        bits = self._bits.get(buf.dtype)
        if bits is None:
            bits = self._bits[buf.dtype] = (*bracket_bits(self.lo, self.hi, buf.dtype),
                                            self.hi.astype(buf.dtype))
        lo_bits, width, hi = bits
        scratch = {} if scratch is None else scratch
        gathered = scratch.get("gathered")
        if (gathered is None or gathered.shape[0] != count + 1 or gathered.shape[1] < n
                or gathered.dtype != buf.dtype):
            gathered = scratch["gathered"] = np.empty((count + 1, n), dtype=buf.dtype)
        inside = np.zeros(count, dtype=np.int64)
        _bracket_pass(buf, _raw_flags(raw, count), _flat(base, buf), count, stride, n, hi,
                      lo_bits, width, gathered, inside, above)
        return [gathered[k, :inside[k]].copy() for k in range(count)]


def warm(dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)) -> None:
    """Compile (or load from numba's cache) every kernel for these dtypes now: a fixed cost
    of 50-70 MB of memory (LLVM and numba's runtime) and, cached, about half a second (the
    merge engine loads them with `load_in_background`)."""
    if not available():
        return
    for dtype in dtypes:  # numba compiles per argument types, not per flag value: one call each
        block = torch.zeros(2, 4, dtype=dtype)
        ties_merge(block, [0.0, 0.0], [0.5, 0.5], False, False)
        BracketGatherer(np.zeros(2), np.ones(2))(block, np.zeros(2, dtype=np.int64))
        keys = np.zeros(2, dtype=np.uint64)
        dare_sum(block, keys, 0, 1 << 31, [0.5, 0.5])
        dare_drop(block, keys, 0, 1 << 31, 0.5)
    _warmed.update(dtypes)


_warmed: set = set()  # dtypes `warm` has loaded in this process


def load_in_background(dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> None:
    """`warm` in a thread of its own, so that the caller's work that needs no kernel
    (opening inputs, reading blocks, TIES' threshold samples) goes on meanwhile; `enabled`
    waits for it. Most of the load is numba's first use in a process (its typing registries,
    whose import pulls in scipy.linalg), not these kernels."""
    if not available() or _warmed.issuperset(dtypes) or not _loaded.is_set():
        return

    def load():
        try:
            warm(dtypes)
        finally:
            _loaded.set()

    _loaded.clear()
    threading.Thread(target=load, name="dtm-kernels-load", daemon=True).start()

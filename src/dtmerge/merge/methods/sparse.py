"""Sparsify-then-merge methods: TIES and DARE (linear and TIES variants).

Semantics follow the papers and mergekit: magnitude pruning keeps the int(density * n) largest
|delta| of each task vector; DARE keeps each entry with probability `density` and rescales by
1/density; TIES elects per entry the sign of the weighted sum and averages, weighted, the
models that agree with it. PEFT's `merge_utils` has these operators, but each is slow or
unfit on the merge's hot path, so they are written by hand and tested against PEFT's:
- `magnitude_based_pruning` runs `topk` over the whole tensor (mergekit a full `argsort`):
  7.6 ns per value (`kthvalue` 12-24 ns), with the whole task vector in memory. Here
  `magnitude_cuts` finds the same threshold exactly in one streamed pass that costs under 1 ns
  per value: a random sample brackets the k-th largest |delta|, the pass counts the values
  above the bracket and gathers the few inside it, and `np.partition` picks the k-th among
  those (a bracket that misses, odds about 1e-9 per tensor, costs one more pass);
- `calculate_majority_sign_mask` and `disjoint_merge` build bool and int64 masks (comparisons
  into bool run 3-4x slower than float arithmetic here) and divide by the *count* of agreeing
  models, which equals the weighted mean only when all weights are 1. `sign_consensus_merge_`
  uses float-only passes (sum, copysign, relu, sign);
- `random_pruning` draws from the global RNG with `bernoulli` (3x slower than `rand < p`),
  so a merge cannot be reproduced or cut into blocks. Here entry i of a (tensor, model) is
  kept when the top 32 bits of the i-th output of a SplitMix64 generator seeded by (seed,
  tensor, model) are below round(density * 2^32) (`dare_keep`): SplitMix64's i-th output is
  a function of i, so the mask depends on nothing but the seed, tensor, model and position,
  never on the blocks, and the compiled kernels draw it inside their loop.

`kernels.py` has the same operators as single compiled loops (used when numba is installed);
the functions here are their reference and the fallback, equal to them bit for bit.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from dtmerge.errors import MergeError
from dtmerge.merge.methods import kernels
from dtmerge.merge.methods.base import (Block, DeltaSampler, DeltaStream, MergeMethod, normalized,
                                         per_model)

# Sampled values per model when bracketing the threshold of a large tensor, and the bracket's
# half-width in binomial standard deviations of the sample rank (a miss costs one extra exact
# pass; its odds at 6 sigma are about 1e-9).
SAMPLE_SIZE = 1 << 16
SAMPLE_STRIDE = 64  # smaller tensors get a sample of one value in this many (at least 1024)
BRACKET_SIGMAS = 6.0
# Tensors up to this many values are selected exactly without sampling (all values gathered).
# Above it the smallest sample (1024 values) already brackets a fraction of them: at 4 x 164K
# values (the K/V projections of a Gemma-3-270M layer) 12% instead of all go through the
# partition.
DIRECT_MAX = 1 << 16


@dataclass
class MagnitudeCut:
    """Which entries of one model's task vector (one tensor) TIES keeps: |d| > threshold, and
    the entries tied at the threshold in storage order up to the budget, as a stable top-k.

    `tie_block` is the flat offset of the block holding the last kept tie, of whose ties the
    first `ties_in_block` are kept; ties before that block are kept, ties after it dropped.
    None: every tie is kept (or the threshold is 0, where ties are zeros and change nothing).
    `just_below` is the largest value of the work dtype under the threshold, so that
    hardshrink (which keeps |d| > lambda) keeps |d| >= threshold.
    """

    threshold: float
    just_below: float
    tie_block: int | None = None
    ties_in_block: int = 0


def sample_positions(numel: int, size: int) -> torch.Tensor:
    """`size` sorted flat positions, one uniformly at random in each of `size` equal strata
    (a stratified sample: its quantiles vary less than an i.i.d. sample's, and reading it walks
    the tensor forward). Seeded by the tensor's size: the bracket it gives sets the speed,
    never the result."""
    gen = torch.Generator().manual_seed(numel)
    starts = torch.arange(size, dtype=torch.float64) * (numel / size)
    return (starts + torch.rand(size, generator=gen, dtype=torch.float64) * (numel / size)
            ).long().clamp_(max=numel - 1)


def _brackets(numel: int, keep: int, count: int,
              sample: DeltaSampler | None) -> tuple[np.ndarray, np.ndarray]:
    """Per model [lo, hi] holding the keep-th largest |delta| with overwhelming odds."""
    lo, hi = np.zeros(count), np.full(count, np.inf)
    if sample is None or numel <= DIRECT_MAX:
        return lo, hi  # gather every value: exact, and small
    size = min(SAMPLE_SIZE, max(numel // SAMPLE_STRIDE, 1024))
    # In the values' own dtype: |d| is exact in it and orders the same as in float64, and the
    # partition runs on half the bytes (float64 bounds below are exact copies).
    values = np.abs(sample(sample_positions(numel, size)).numpy())
    share = keep / numel
    center = (1 - share) * size  # the threshold's place in the ascending sample
    spread = BRACKET_SIGMAS * math.sqrt(size * share * (1 - share)) + 1
    below, over = math.floor(center - spread), math.ceil(center + spread)
    ranks = [r for r in (below, over) if 0 <= r < size]
    ordered = np.partition(values, ranks, axis=1) if ranks else values
    if below >= 0:
        lo = ordered[:, below].astype(np.float64)
    if over < size:
        hi = ordered[:, over].astype(np.float64)
    return lo, hi


def gather_block(flat: torch.Tensor, lo: np.ndarray, hi: np.ndarray, above: np.ndarray,
                 fused: kernels.BracketGatherer | None = None, scratch: dict | None = None
                 ) -> list[np.ndarray]:
    """One (K, n) block of task vectors: adds to `above` per model how many |delta| exceed
    hi, and returns per model the values in [lo, hi] in storage order (numpy: its comparisons
    into bool ran 7x faster than torch's here). `scratch` (a dict kept between calls) holds
    reused buffers."""
    count = flat.shape[0]
    scratch = {} if scratch is None else scratch
    if fused is not None and kernels.enabled(flat.numel()):  # one compiled loop instead
        return fused(flat, above, scratch=scratch)
    if scratch.get("shape") != tuple(flat.shape) or scratch.get("dtype") != flat.dtype:
        magnitude = torch.empty_like(flat)
        dtype = magnitude.numpy().dtype  # bounds in the values' own dtype (exact: they are
        scratch.update(shape=tuple(flat.shape), dtype=flat.dtype, magnitude=magnitude,
                       over=np.empty(flat.shape, bool), inside=np.empty(flat.shape, bool),
                       low=lo.astype(dtype)[:, None], high=hi.astype(dtype)[:, None])  # its values)
    over, inside = scratch["over"], scratch["inside"]
    magnitude = torch.abs(flat, out=scratch["magnitude"]).numpy()  # `flat` is shared: intact
    np.greater(magnitude, scratch["high"], out=over)
    above += [np.count_nonzero(row) for row in over]  # (axis=1 takes a slow sum path)
    np.greater_equal(magnitude, scratch["low"], out=inside)
    np.logical_xor(inside, over, out=inside)  # lo <= |d| <= hi, as over implies >= lo
    return [magnitude[k][inside[k]] for k in range(count)]


def _gather_pass(deltas: DeltaStream, count: int, lo: np.ndarray, hi: np.ndarray):
    """One streamed pass: per model, how many |delta| exceed hi, and the values in [lo, hi]
    of each block with the block's flat offset."""
    above = np.zeros(count, dtype=np.int64)
    parts: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(count)]
    offset, scratch, fused = 0, {}, kernels.BracketGatherer(lo, hi)
    for block in deltas():
        flat = block.reshape(count, -1)
        for k, values in enumerate(gather_block(flat, lo, hi, above, fused, scratch)):
            parts[k].append((offset, values))
        offset += flat.shape[1]
    return above, parts


def _cut(keep: int, above: int, parts: list[tuple[int, np.ndarray]]) -> MagnitudeCut | None:
    """The exact cut if the keep-th largest |delta| lies in the gathered values, else None."""
    inside = sum(len(v) for _, v in parts)
    if not above < keep <= above + inside:
        return None
    values = np.concatenate([v for _, v in parts])
    rank = len(values) - (keep - above)  # where the keep-th largest sits in ascending order
    threshold = np.partition(values, rank)[rank]
    budget = keep - above - int(np.count_nonzero(values > threshold))  # ties still to keep
    cut = MagnitudeCut(float(threshold), float(np.nextafter(threshold, threshold.dtype.type(0))))
    if threshold == 0:
        return cut
    for offset, v in parts:
        ties = int(np.count_nonzero(v == threshold))
        if ties > budget:  # this block holds the first tie to drop
            cut.tie_block, cut.ties_in_block = offset, budget
            return cut
        budget -= ties
    return cut  # every tie is kept


@dataclass
class CutSearch:
    """`magnitude_cuts` in three steps, for a caller that runs the pass over blocks itself
    (the merge engine, block by block in its worker threads): `bounds` from the sample, then
    `gather` on every block (any order, any thread, each with its own `above`), then
    `finish` with the results in storage order."""

    numel: int
    count: int
    keep: int
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def bounds(cls, numel: int, count: int, density: float,
               sample: DeltaSampler | None = None) -> "CutSearch | None":
        """None when every entry is kept (density 1, or an empty tensor)."""
        if density >= 1.0 or numel == 0:
            return None
        keep = max(1, int(density * numel))
        return cls(numel, count, keep, *_brackets(numel, keep, count, sample))

    def __post_init__(self):
        self.fused = kernels.BracketGatherer(self.lo, self.hi)

    def gather(self, flat: torch.Tensor, above: np.ndarray, **fused_args) -> list[np.ndarray]:
        """`gather_block` of one (K, n) block. `fused_args` (base, raw, scratch) go to the
        compiled pass, which takes rows of model weights (raw) too; without the kernels
        `flat` must hold task vectors."""
        if kernels.enabled(flat.numel()):
            return self.fused(flat, above, **fused_args)
        return gather_block(flat, self.lo, self.hi, above)

    def finish(self, above: np.ndarray, parts: list[list[tuple[int, np.ndarray]]],
               deltas: DeltaStream) -> list[MagnitudeCut]:
        """The cuts; a model whose bracket missed gets a second pass over `deltas` (a fresh
        stream of the tensor's task vectors) gathering all its values."""
        cuts = [_cut(self.keep, int(above[k]), parts[k]) for k in range(self.count)]
        del parts
        missed = [k for k, c in enumerate(cuts) if c is None]
        if missed:
            skip = np.full(self.count, np.nan)  # NaN bounds gather nothing for the others
            lo, hi = skip.copy(), skip.copy()
            lo[missed], hi[missed] = 0, np.inf
            above, parts = _gather_pass(deltas, self.count, lo, hi)
            for k in missed:
                # Still None: NaN entries, which no comparison counts. Keep everything, so the
                # NaN reaches the merged block and the engine's check names the tensor.
                cuts[k] = _cut(self.keep, int(above[k]), parts[k]) or MagnitudeCut(0.0, 0.0)
        return cuts


def magnitude_cuts(numel: int, deltas: DeltaStream, count: int, density: float,
                   sample: DeltaSampler | None = None) -> list[MagnitudeCut]:
    """Per model, the cut keeping exactly max(1, int(density * n)) entries, as a stable top-k
    of |delta| (ties at the threshold kept in storage order, like the tests' reference).

    `deltas` streams the (K, *block) task vectors in storage order; `sample` (optional) gives
    task-vector values at flat positions, to bracket the threshold of large tensors. Exact
    whatever the sample: it only decides how few values the streamed pass gathers. A model
    whose bracket missed gets a second pass gathering all its values (one tensor's worth).
    """
    search = CutSearch.bounds(numel, count, density, sample)
    if search is None:
        return [MagnitudeCut(0.0, 0.0) for _ in range(count)]
    above, parts = _gather_pass(deltas, count, search.lo, search.hi)
    return search.finish(above, parts, deltas)


def prune_by_magnitude_(stacked: torch.Tensor, cuts: list[MagnitudeCut], offset: int) -> None:
    """Zero, in place, the entries each model's cut drops; `stacked` is (K, *block) and holds
    the values from flat position `offset` of the tensor on."""
    for k, cut in enumerate(cuts):
        row = stacked[k].view(-1)
        if cut.threshold == 0:  # keeps every non-zero entry; zeros contribute nothing
            continue
        if cut.tie_block is None or offset < cut.tie_block:  # keep |d| >= threshold
            torch.hardshrink(row, cut.just_below, out=row)
        elif offset > cut.tie_block:  # past the last kept tie: keep |d| > threshold
            torch.hardshrink(row, cut.threshold, out=row)
        else:
            tied = (row.abs() == cut.threshold).nonzero().view(-1)[:cut.ties_in_block]
            kept = row[tied]
            torch.hardshrink(row, cut.threshold, out=row)
            row[tied] = kept


def fused_cuts(cuts: list[MagnitudeCut], offset: int) -> tuple[list[float], list[int]]:
    """What `prune_by_magnitude_` does in the block starting at flat `offset`, as the fused
    TIES kernel takes it: per model, the |delta| at or below which an entry is dropped (-1
    to keep all), and how many entries at exactly that |delta| are kept all the same, in
    storage order (-1: none; set in the block holding the model's last kept tie)."""
    keep_above, ties = [], []
    for cut in cuts:
        if cut.threshold == 0:
            keep_above.append(-1.0)
        elif cut.tie_block is None or offset < cut.tie_block:
            keep_above.append(cut.just_below)
        else:  # at or past the block of the last kept tie: keep |d| > threshold
            keep_above.append(cut.threshold)
        ties.append(cut.ties_in_block if cut.threshold != 0 and offset == cut.tie_block else -1)
    return keep_above, ties


def fused_consensus(stacked: torch.Tensor, keep_above: list[float], weights: list[float],
                    sign_method: str, **finish) -> tuple[torch.Tensor, int]:
    """`prune_by_magnitude_` (by `keep_above` and `ties`, see `fused_cuts`) +
    `sign_consensus_merge_` in the compiled kernel, with the weights rounded to the stack's
    dtype as the eager path rounds them, and skipped when all are equal (they cancel out of
    the mean); `finish` (ties, scaling, base, raw, out) goes to `kernels.ties_merge`.
    Returns it and its NaN/inf count."""
    uniform = len(set(weights)) == 1
    w = torch.tensor(weights).to(stacked.dtype).tolist()
    return kernels.ties_merge(stacked, keep_above, w, not uniform, sign_method == "frequency",
                              **finish)


@functools.lru_cache(maxsize=4096)  # asked again for every block of the tensor
def mask_key(seed: int, name: str, model: int) -> int:
    """The 64-bit SplitMix64 seed of DARE's mask of one (merge seed, tensor, model)."""
    text = f"{seed}|{name}|{model}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment
DARE_CHUNK = 1 << 16  # values drawn at a time by the numpy path: its buffers stay in cache


def keep_threshold(density: float) -> int:
    """Entry kept when the top 32 bits of its draw are below this: probability density
    within 2^-33."""
    return min(round(density * 2.0 ** 32), 2 ** 32 - 1)


def dare_keep(key: int, start: int, count: int, threshold: int) -> np.ndarray:
    """DARE's keep mask (bool) of entries [start, start + count) of one (tensor, model):
    entry i is kept when the top 32 bits of SplitMix64's i-th output (seeded with `key`:
    state key + (i + 1) * golden, then the output mix) are below `threshold`."""
    x = (np.arange(start + 1, start + count + 1, dtype=np.uint64) * GOLDEN) + np.uint64(key)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(32)) < np.uint64(threshold)


def flat_offset(block: Block) -> int:
    """Where the block starts in its tensor, in values."""
    if block.rows is None:
        return 0
    first, end = block.rows
    return first * (block.tensors[0].numel() // max(1, end - first))


def _dare_chunks(block: Block, k: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(start, end, 1.0/0.0 mask) of model k's row of the block, chunk by chunk."""
    row = block.tensors[k].reshape(-1)
    key = mask_key(int(block.params["seed"]), block.name, k)
    threshold = keep_threshold(float(block.params["density"]))
    offset = flat_offset(block)
    for start in range(0, row.numel(), DARE_CHUNK):
        end = min(row.numel(), start + DARE_CHUNK)
        keep = dare_keep(key, offset + start, end - start, threshold)
        yield start, end, torch.from_numpy(keep).to(row.dtype)


def _dare_fused_args(block: Block) -> tuple[np.ndarray, int, int]:
    keys = np.array([mask_key(int(block.params["seed"]), block.name, k)
                     for k in range(block.tensors.shape[0])], dtype=np.uint64)
    return keys, flat_offset(block), keep_threshold(float(block.params["density"]))


def dare_drop_(block: Block, rescale: bool = True) -> torch.Tensor:
    """DARE in place: keep each entry with probability `density`, rescale kept ones by 1/density
    (unless `rescale` is False: the caller folds 1/density into the model weights)."""
    density = float(block.params["density"])
    stacked = block.tensors
    if density >= 1.0:
        return stacked
    if kernels.enabled(stacked.numel()):
        kernels.dare_drop(stacked, *_dare_fused_args(block), density if rescale else 1.0)
        return stacked
    for k in range(stacked.shape[0]):
        row = stacked[k].view(-1)
        for start, end, mask in _dare_chunks(block, k):
            part = row[start:end].mul_(mask)
            if rescale:
                part.div_(density)
    return stacked


def dare_weighted_sum(block: Block, coeffs: list[float]) -> torch.Tensor:
    """sum_k c_k * (delta_k * mask_k), models in order; chunk by chunk in the numpy path,
    one loop with the draws inside it in the compiled one."""
    stacked, density = block.tensors, float(block.params["density"])
    if density < 1.0 and kernels.enabled(stacked.numel()):
        return kernels.dare_sum(stacked, *_dare_fused_args(block), coeffs)[0]
    merged = torch.zeros(stacked.shape[1:], dtype=stacked.dtype)
    flat = merged.view(-1)
    for k, c in enumerate(coeffs):
        row = stacked[k].reshape(-1)
        if density >= 1.0:
            flat.add_(row, alpha=c)
            continue
        for start, end, mask in _dare_chunks(block, k):
            flat[start:end].add_(row[start:end].mul(mask).mul_(c))  # as the kernel rounds
    return merged


def sign_consensus_merge_(stacked: torch.Tensor, weights: list[float], sign_method: str) -> torch.Tensor:
    """TIES' elect-sign and disjoint mean, weighted, over the models agreeing with the sign.

    Overwrites `stacked` (K, *block) of pruned task vectors. Float passes only: with s = +1
    where the elected sum is >= 0 and -1 elsewhere, relu(s * d_k) is |d_k| where model k
    agrees and 0 where it does not (or is 0), and its sign() is the agreement indicator.
    """
    uniform = len(set(weights)) == 1
    w = per_model(torch.tensor(weights), stacked)
    if not uniform:  # equal weights cancel out of the weighted mean: skip two passes
        stacked.mul_(w)
    if sign_method == "total":
        elected = stacked.sum(0)
    else:  # "frequency": the sign most models have (sum of signs = #positive - #negative)
        elected = torch.sign(stacked).sum(0)
    # + 0.0 turns a -0.0 sum into +0.0, whose sign counts as positive (sum >= 0)
    sign = torch.ones_like(elected).copysign_(elected.add_(0.0))
    agreeing = stacked.mul_(sign).relu_()
    merged = agreeing.sum(0).mul_(sign)
    agree = agreeing.sign_()
    if uniform:
        divisor = agree.sum(0).clamp_(min=1)
    else:
        divisor = (agree * w).sum(0)
        divisor[divisor == 0] = 1
    return merged.div_(divisor)


def scaled_(merged: torch.Tensor, scaling: float) -> torch.Tensor:
    """merged * scaling in place; no pass at all for the default 1.0, where x * 1.0 == x for
    every value (signed zeros, infinities and NaN included)."""
    return merged if scaling == 1.0 else merged.mul_(scaling)


class _SparseMethod(MergeMethod):
    space = "deltas"
    compiled = True

    def check_params(self, params):
        out = super().check_params(params)
        if out.get("majority_sign", "total") not in ("total", "frequency"):
            raise MergeError(f"merge parameter 'majority_sign' must be 'total' or 'frequency', "
                             f"got {out['majority_sign']!r}")
        return out


class Ties(_SparseMethod):
    """Trim each task vector to its largest-magnitude entries, elect signs, disjoint mean."""

    name = "ties"
    pretty_name = "TIES-Merging"
    reference_url = "https://arxiv.org/abs/2306.01708"
    summary = "keep the top `density` of each task vector by magnitude, elect signs, disjoint mean"
    defaults = {"density": 0.5, "majority_sign": "total", "scaling": 1.0}
    needs_prepare = True

    def prepare(self, name, numel, deltas, weights, params, sample=None):
        return magnitude_cuts(numel, deltas, len(weights), float(params["density"]), sample)

    def combine(self, block: Block) -> torch.Tensor:
        stacked = block.tensors
        offset = flat_offset(block)
        sign_method = block.params["majority_sign"]
        if kernels.enabled(stacked.numel()):
            keep_above, ties = fused_cuts(block.state, offset)
            merged = fused_consensus(stacked, keep_above, block.weights, sign_method,
                                     ties=ties)[0]
        else:
            prune_by_magnitude_(stacked, block.state, offset)
            merged = sign_consensus_merge_(stacked, block.weights, sign_method)
        return scaled_(merged, block.params["scaling"])

    def finished(self, block: Block, raw: list[bool], out: torch.Tensor) -> int | None:
        """Prune, elect, mean, scale and base + update in the one kernel (`ties_merge`);
        None without the kernels."""
        if not kernels.enabled(block.tensors.numel()):
            return None
        keep_above, ties = fused_cuts(block.state, flat_offset(block))
        return fused_consensus(block.tensors, keep_above, block.weights,
                               block.params["majority_sign"], ties=ties,
                               scaling=block.params["scaling"], base=block.base, raw=raw,
                               out=out)[1]


class DareLinear(_SparseMethod):
    """Randomly drop task-vector entries, rescale the rest, then weighted sum."""

    name = "dare_linear"
    pretty_name = "DARE (linear)"
    reference_url = "https://arxiv.org/abs/2311.03099"
    summary = "drop entries with probability 1-density, rescale by 1/density, weighted sum"
    defaults = {"density": 0.5, "scaling": 1.0, "normalize": True, "seed": 0}

    def _coefficients(self, block: Block) -> list[float]:
        density = float(block.params["density"])
        w = (normalized(block.weights, block.tensors) if block.params["normalize"]
             else torch.tensor(block.weights, dtype=block.tensors.dtype))
        return (w * (block.params["scaling"] / min(1.0, density))).tolist()

    def combine(self, block: Block) -> torch.Tensor:
        return dare_weighted_sum(block, self._coefficients(block))

    def finished(self, block: Block, raw: list[bool], out: torch.Tensor) -> int | None:
        """Drop, rescale, weighted sum and base + update in one kernel (`dare_sum`)."""
        stacked = block.tensors
        if float(block.params["density"]) >= 1.0 or not kernels.enabled(stacked.numel()):
            return None
        return kernels.dare_sum(stacked, *_dare_fused_args(block), self._coefficients(block),
                                base=block.base, raw=raw, out=out)[1]


class DareTies(_SparseMethod):
    """DARE's random drop-and-rescale followed by TIES' sign election and disjoint mean."""

    name = "dare_ties"
    pretty_name = "DARE (TIES)"
    reference_url = "https://arxiv.org/abs/2311.03099"
    summary = "DARE drop-and-rescale, then TIES sign election and disjoint mean"
    defaults = {"density": 0.5, "majority_sign": "total", "scaling": 1.0, "seed": 0}

    def combine(self, block: Block) -> torch.Tensor:
        kept = dare_drop_(block)
        sign_method = block.params["majority_sign"]
        if kernels.enabled(kept.numel()):
            merged = fused_consensus(kept, [-1.0] * len(block.weights), block.weights,
                                     sign_method)[0]
        else:
            merged = sign_consensus_merge_(kept, block.weights, sign_method)
        return scaled_(merged, block.params["scaling"])

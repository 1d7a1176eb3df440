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
- `random_pruning` draws from the global RNG with `bernoulli` (3x slower than `rand < p`);
  here each (seed, tensor, model, block) has its own PCG64 generator, so merges are
  reproducible, and the mask comes from its raw 32-bit draws compared in numpy and applied in
  one fused multiply-add per model (`keep_mask_`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from dtmerge.errors import MergeError
from dtmerge.merge.methods.base import (Block, DeltaSampler, DeltaStream, MergeMethod, normalized,
                                         per_model)

# Sampled values per model when bracketing the threshold of a large tensor, and the bracket's
# half-width in binomial standard deviations of the sample rank (a miss costs one extra exact
# pass; its odds at 6 sigma are about 1e-9).
SAMPLE_SIZE = 1 << 16
SAMPLE_STRIDE = 64  # smaller tensors get a sample of one value in this many (at least 1024)
BRACKET_SIGMAS = 6.0
# Tensors up to this many values are selected exactly without sampling (all values gathered).
DIRECT_MAX = 4 * SAMPLE_SIZE


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
    values = sample(sample_positions(numel, size)).abs().double().numpy()  # exact in float64
    share = keep / numel
    center = (1 - share) * size  # the threshold's place in the ascending sample
    spread = BRACKET_SIGMAS * math.sqrt(size * share * (1 - share)) + 1
    below, over = math.floor(center - spread), math.ceil(center + spread)
    ranks = [r for r in (below, over) if 0 <= r < size]
    ordered = np.partition(values, ranks, axis=1) if ranks else values
    if below >= 0:
        lo = ordered[:, below].copy()
    if over < size:
        hi = ordered[:, over].copy()
    return lo, hi


def _gather_pass(deltas: DeltaStream, count: int, lo: np.ndarray, hi: np.ndarray):
    """One streamed pass: per model, how many |delta| exceed hi, and the values in [lo, hi]
    of each block with the block's flat offset (numpy: its comparisons into bool ran 7x
    faster than torch's here)."""
    above = np.zeros(count, dtype=np.int64)
    parts: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(count)]
    offset, scratch = 0, None
    for block in deltas():
        flat = block.reshape(count, -1)
        if scratch is None or scratch.shape != flat.shape:
            scratch = torch.empty_like(flat)
            over, inside = np.empty(flat.shape, bool), np.empty(flat.shape, bool)
            dtype = scratch.numpy().dtype  # bounds in the values' own dtype (exact: they are
            low, high = lo.astype(dtype)[:, None], hi.astype(dtype)[:, None]  # its values)
        magnitude = torch.abs(flat, out=scratch).numpy()  # `block` is shared: leave it intact
        np.greater(magnitude, high, out=over)
        above += [np.count_nonzero(row) for row in over]  # (axis=1 takes a slow sum path)
        np.greater_equal(magnitude, low, out=inside)
        np.logical_xor(inside, over, out=inside)  # lo <= |d| <= hi, as over implies >= lo
        for k in range(count):
            parts[k].append((offset, magnitude[k][inside[k]]))
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


def magnitude_cuts(numel: int, deltas: DeltaStream, count: int, density: float,
                   sample: DeltaSampler | None = None) -> list[MagnitudeCut]:
    """Per model, the cut keeping exactly max(1, int(density * n)) entries, as a stable top-k
    of |delta| (ties at the threshold kept in storage order, like the tests' reference).

    `deltas` streams the (K, *block) task vectors in storage order; `sample` (optional) gives
    task-vector values at flat positions, to bracket the threshold of large tensors. Exact
    whatever the sample: it only decides how few values the streamed pass gathers. A model
    whose bracket missed gets a second pass gathering all its values (one tensor's worth).
    """
    if density >= 1.0 or numel == 0:
        return [MagnitudeCut(0.0, 0.0) for _ in range(count)]
    keep = max(1, int(density * numel))
    lo, hi = _brackets(numel, keep, count, sample)
    above, parts = _gather_pass(deltas, count, lo, hi)
    cuts = [_cut(keep, int(above[k]), parts[k]) for k in range(count)]
    del parts
    missed = [k for k, c in enumerate(cuts) if c is None]
    if missed:
        skip = np.full(count, np.nan)  # NaN bounds gather nothing for the other models
        lo, hi = skip.copy(), skip.copy()
        lo[missed], hi[missed] = 0, np.inf
        above, parts = _gather_pass(deltas, count, lo, hi)
        for k in missed:
            # Still None: NaN entries, which no comparison counts. Keep everything, so the
            # NaN reaches the merged block and the engine's check names the tensor.
            cuts[k] = _cut(keep, int(above[k]), parts[k]) or MagnitudeCut(0.0, 0.0)
    return cuts


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


def block_seed(seed: int, name: str, model: int, rows: tuple[int, int] | None) -> int:
    """A reproducible RNG seed per (merge seed, tensor, model, row block)."""
    text = f"{seed}|{name}|{model}|{rows[0] if rows else 0}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


DARE_CHUNK = 1 << 16  # values drawn and masked at a time: the chunk's buffers stay in cache


def keep_masks(seed: int, name: str, model: int, rows, density: float, numel: int,
               dtype: torch.dtype) -> Iterator[tuple[int, torch.Tensor]]:
    """DARE's keep mask of one (tensor, model, row block), chunk by chunk: (start, 1.0/0.0
    values for [start, start + len)).

    Entry i is kept when the i-th 32-bit draw of a PCG64 generator seeded by `block_seed`
    is below round(density * 2^32): probability density within 2^-33 (torch.rand's float32
    draws resolve 2^-24), at ~1 ns per value against ~11 for rand, compare and a bool
    multiply in torch. Chunks are cache-sized and of even length (two draws per 64-bit
    word), so the mask depends on nothing but the seed, the tensor, the model and the block,
    and the caller applies each chunk while it is still in cache.
    """
    gen = np.random.Generator(np.random.PCG64(block_seed(seed, name, model, rows)))
    threshold = np.uint32(min(round(density * 2.0 ** 32), 2 ** 32 - 1))
    keep = np.empty(min(numel, DARE_CHUNK), dtype=bool)
    mask = torch.empty(len(keep), dtype=dtype)
    for start in range(0, numel, DARE_CHUNK):
        n = min(DARE_CHUNK, numel - start)
        draws = gen.bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n]
        np.less(draws, threshold, out=keep[:n])
        yield start, mask[:n].copy_(torch.from_numpy(keep[:n]))


def keep_mask_(seed: int, name: str, model: int, rows, density: float,
               out: torch.Tensor) -> torch.Tensor:
    """The whole keep mask (see `keep_masks`) into the flat tensor `out`."""
    for start, chunk in keep_masks(seed, name, model, rows, density, out.numel(), out.dtype):
        out[start:start + len(chunk)].copy_(chunk)
    return out


def dare_drop_(block: Block, rescale: bool = True) -> torch.Tensor:
    """DARE in place: keep each entry with probability `density`, rescale kept ones by 1/density
    (unless `rescale` is False: the caller folds 1/density into the model weights)."""
    density = float(block.params["density"])
    stacked = block.tensors
    if density >= 1.0:
        return stacked
    for k in range(stacked.shape[0]):
        row = stacked[k].view(-1)
        for start, mask in keep_masks(int(block.params["seed"]), block.name, k, block.rows,
                                      density, row.numel(), row.dtype):
            part = row[start:start + len(mask)].mul_(mask)
            if rescale:
                part.div_(density)
    return stacked


def dare_weighted_sum(block: Block, coeffs: list[float]) -> torch.Tensor:
    """sum_k c_k * mask_k * delta_k, one fused multiply-add per model and cache-sized chunk
    (instead of mask, weight and sum passes over the whole (K, *block) stack)."""
    stacked, density = block.tensors, float(block.params["density"])
    merged = torch.zeros(stacked.shape[1:], dtype=stacked.dtype)
    flat = merged.view(-1)
    for k, c in enumerate(coeffs):
        row = stacked[k].reshape(-1)
        if density >= 1.0:
            flat.add_(row, alpha=c)
            continue
        for start, mask in keep_masks(int(block.params["seed"]), block.name, k, block.rows,
                                      density, row.numel(), row.dtype):
            end = start + len(mask)
            flat[start:end].addcmul_(row[start:end], mask, value=c)
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


class _SparseMethod(MergeMethod):
    space = "deltas"

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
        offset = 0 if block.rows is None else block.rows[0] * (stacked[0].numel() // max(
            1, block.rows[1] - block.rows[0]))
        prune_by_magnitude_(stacked, block.state, offset)
        merged = sign_consensus_merge_(stacked, block.weights, block.params["majority_sign"])
        return merged.mul_(block.params["scaling"])


class DareLinear(_SparseMethod):
    """Randomly drop task-vector entries, rescale the rest, then weighted sum."""

    name = "dare_linear"
    pretty_name = "DARE (linear)"
    reference_url = "https://arxiv.org/abs/2311.03099"
    summary = "drop entries with probability 1-density, rescale by 1/density, weighted sum"
    defaults = {"density": 0.5, "scaling": 1.0, "normalize": True, "seed": 0}
    seeded_per_block = True

    def combine(self, block: Block) -> torch.Tensor:
        density = float(block.params["density"])
        w = (normalized(block.weights, block.tensors) if block.params["normalize"]
             else torch.tensor(block.weights, dtype=block.tensors.dtype))
        return dare_weighted_sum(block, (w * (block.params["scaling"] / min(1.0, density))
                                         ).tolist())


class DareTies(_SparseMethod):
    """DARE's random drop-and-rescale followed by TIES' sign election and disjoint mean."""

    name = "dare_ties"
    pretty_name = "DARE (TIES)"
    reference_url = "https://arxiv.org/abs/2311.03099"
    summary = "DARE drop-and-rescale, then TIES sign election and disjoint mean"
    defaults = {"density": 0.5, "majority_sign": "total", "scaling": 1.0, "seed": 0}
    seeded_per_block = True

    def combine(self, block: Block) -> torch.Tensor:
        kept = dare_drop_(block)
        merged = sign_consensus_merge_(kept, block.weights, block.params["majority_sign"])
        return merged.mul_(block.params["scaling"])

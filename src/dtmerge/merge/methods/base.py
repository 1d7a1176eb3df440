"""What a merge method is: a per-block combination rule plus its name, paper and parameters.

The engine streams every base tensor in row blocks and hands a method one `Block` at a time:
the base block and, per input model, either its weights (`space = "weights"`) or its task
vector W_k - W_0 (`space = "deltas"`). A method returns the merged block in the same space.
Methods that need statistics of the whole tensor first (TIES' magnitude threshold) implement
`prepare`, which receives a function streaming the stacked task vectors block by block and one
returning them at given flat positions (a random sample).

Blocks are cache-sized, and no method's result depends on how a tensor is cut into them
(DARE's random mask is a function of each entry's position; tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from dtmerge.errors import MergeError

DeltaStream = Callable[[], Iterator[torch.Tensor]]  # a fresh pass over (K, *block) task vectors
DeltaSampler = Callable[[torch.Tensor], torch.Tensor]  # flat positions (m,) -> (K, m) task vectors


@dataclass
class Block:
    """One row block of one tensor, as every input model has it."""

    name: str
    rows: tuple[int, int] | None
    base: torch.Tensor | None  # None when the method needs no base (average of full models)
    # (K, *block): row k is model k's weights or task vector. The method owns this buffer and
    # may overwrite it; it is refilled for the next block.
    tensors: torch.Tensor
    weights: list[float]
    params: dict[str, Any]
    state: Any = None  # what `prepare` returned for this tensor
    extras: dict[str, Any] = field(default_factory=dict)


class MergeMethod:
    """Base class of merge methods. Subclasses set the class attributes and `combine`."""

    name: str = ""
    pretty_name: str = ""
    reference_url: str = ""
    summary: str = ""
    space: str = "weights"  # or "deltas"
    defaults: dict[str, Any] = {}
    # True when the merged update is a linear map of the inputs' updates (exact as an adapter).
    linear_in_deltas: bool = False
    needs_prepare: bool = False
    compiled: bool = False  # runs the compiled loops of kernels.py on large blocks

    def check_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults filled in; unknown keys and bad values raise MergeError naming them."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            allowed = ", ".join(sorted(self.defaults)) or "none"
            raise MergeError(f"merge method '{self.name}' has no parameter "
                             f"{', '.join(repr(u) for u in unknown)}; allowed: {allowed}")
        out = {**self.defaults, **params}
        for key, default in self.defaults.items():
            value = out[key]
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise MergeError(f"merge parameter '{key}' must be true or false, got {value!r}")
            elif isinstance(default, (int, float)):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise MergeError(f"merge parameter '{key}' must be a number, got {value!r}")
        if "density" in out and not 0.0 < float(out["density"]) <= 1.0:
            raise MergeError(f"merge parameter 'density' must be in (0, 1], got {out['density']}")
        return out

    def setup(self, sources: list, weights: list[float], params: dict, **kwargs) -> dict:
        """Whole-merge preparation (e.g. Fisher estimation); returns extras for every block."""
        return {}

    def prepare(self, name: str, numel: int, deltas: DeltaStream, weights: list[float],
                params: dict, sample: DeltaSampler | None = None) -> Any:
        """Whole-tensor statistics computed before the blocks of `name` are combined."""
        return None

    def combine(self, block: Block) -> torch.Tensor:
        raise NotImplementedError

    def finished(self, block: Block, raw: list[bool], out: torch.Tensor) -> int | None:
        """base + the merged update of `block`, into `out`, in one compiled pass (the engine
        asks for one output at the full update). Row k of `block.tensors` holds model k's
        weights where `raw[k]`, else its task vector; the result must equal `combine` on the
        task vectors followed by base + update, bit for bit. Returns how many values of `out`
        are NaN/inf, or None where there is no such pass (for this method or this block):
        the engine then forms the task vectors and calls `combine`."""
        return None


def normalized(weights: list[float], like: torch.Tensor) -> torch.Tensor:
    """Weights divided by their sum, as a tensor of `like`'s dtype."""
    w = torch.tensor(weights, dtype=like.dtype)
    return w / w.sum()


def per_model(weights: torch.Tensor, stacked: torch.Tensor) -> torch.Tensor:
    """Weights shaped (K, 1, ..., 1) to broadcast over a stacked (K, *block) tensor."""
    return weights.to(stacked.dtype).view(-1, *([1] * (stacked.dim() - 1)))

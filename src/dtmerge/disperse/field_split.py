"""`field`: group examples by a column (e.g. the `source` of each example).

With exactly K distinct values each value is one portion (sorted value order). With more
values than K (TULU's 11 sources into 4), whole values are binned into K portions of balanced
size: largest value first into the currently smallest portion (the greedy LPT rule), so no
value is ever split across portions and the sizes differ by at most the largest value's count.
"""

from __future__ import annotations

from collections import Counter

from dtmerge.config import DisperseConfig
from dtmerge.errors import DataError


def field_split(records: list[dict], cfg: DisperseConfig) -> list[int]:
    """Group records by `cfg.field` into `cfg.num_portions` portions.

    Raises:
        DataError: The column is missing, or it has fewer distinct values than K.
    """
    name = cfg.field
    missing = [i for i, r in enumerate(records) if name not in r]
    if missing:
        present = sorted({k for r in records for k in r} - {"prompt", "completion"})
        raise DataError(
            f"disperse.field '{name}' is missing from {len(missing)} of {len(records)} "
            f"examples (first: example {missing[0]}); columns present: {present or 'none'}"
        )
    # Compare as strings so mixed types (1 vs "1", None) still sort deterministically.
    keys = [str(r[name]) for r in records]
    index = bin_values(Counter(keys), cfg.num_portions, name)
    return [index[key] for key in keys]


def bin_values(counts: Counter, k: int, name: str = "field") -> dict[str, int]:
    """Map each distinct value to a portion: one per value when there are K, else balanced bins."""
    values = sorted(counts)
    if len(values) < k:
        shown = ", ".join(values[:10]) + (", ..." if len(values) > 10 else "")
        raise DataError(
            f"disperse.field '{name}' has {len(values)} distinct values ({shown}) but "
            f"disperse.num_portions is {k}: a value is never split across portions; "
            f"set disperse.num_portions to at most {len(values)}"
        )
    if len(values) == k:
        return {v: i for i, v in enumerate(values)}
    sizes = [0] * k
    index = {}
    # Largest first, ties by value name; the smallest portion (lowest index on ties) takes it.
    for value in sorted(values, key=lambda v: (-counts[v], v)):
        target = min(range(k), key=lambda p: (sizes[p], p))
        index[value] = target
        sizes[target] += counts[value]
    return index

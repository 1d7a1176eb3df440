"""`random`: a seeded random split into K portions whose sizes differ by at most one."""

from __future__ import annotations

import numpy as np

from dtmerge.config import DisperseConfig


def random_split(records: list[dict], cfg: DisperseConfig) -> list[int]:
    """Shuffle with `cfg.seed` and deal the records out round-robin (balanced sizes)."""
    order = np.random.default_rng(cfg.seed).permutation(len(records))
    assignment = [0] * len(records)
    for position, index in enumerate(order):
        assignment[int(index)] = position % cfg.num_portions
    return assignment

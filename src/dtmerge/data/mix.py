"""Several data sets in one run: `data.mix` sources added to `data.path`'s examples.

Each source is read and normalised in its own format, sampled at its `ratio` (0.5: a seeded
half of its examples; 2.0: every example twice), and every example records its source's name
in `dataset` (usable by `disperse.strategy: field` and shown in the portion summaries).
"""

from __future__ import annotations

import random
from pathlib import Path

from dtmerge.config import DataConfig, MixSource
from dtmerge.data.formats import detect_format, normalise
from dtmerge.data.readers import load_records
from dtmerge.errors import DataError


def source_name(path: str, name: str | None) -> str:
    return name or Path(path).stem or path


def at_ratio(records: list[dict], ratio: float, seed: int) -> list[dict]:
    """round(ratio * n) records: whole copies, then a seeded sample of the remainder."""
    want = round(ratio * len(records))
    whole, rest = divmod(want, len(records)) if records else (0, 0)
    return records * whole + random.Random(seed).sample(records, rest)


def read_source(src: MixSource, first_turn_only: bool) -> list[dict]:
    raw = load_records(DataConfig(path=src.path, format=src.format, split=src.split))
    if not raw:
        raise DataError(f"{src.path}: data.mix source is empty")
    fmt = detect_format(raw[0]) if src.format == "auto" else src.format
    out = []
    for i, item in enumerate(raw):
        try:
            record = normalise(item, fmt, first_turn_only)
        except DataError as err:
            raise DataError(f"{src.path}: example {i + 1} (format {fmt}): {err}") from None
        if record is not None:
            out.append(record)
    return out


def mixed_records(dc: DataConfig, main: list[dict]) -> list[dict]:
    """`main` tagged with its source name, plus every `data.mix` source at its ratio."""
    out = [dict(r, dataset=source_name(dc.path, None)) for r in main]
    for i, src in enumerate(dc.mix):
        records = read_source(src, dc.first_turn_only)
        name = source_name(src.path, src.name)
        out += [dict(r, dataset=name) for r in at_ratio(records, src.ratio, dc.seed + i + 1)]
    return out

"""`field`: one portion per distinct value of a column (e.g. the `source` of each example)."""

from __future__ import annotations

from dtmerge.config import DisperseConfig
from dtmerge.errors import DataError


def field_split(records: list[dict], cfg: DisperseConfig) -> list[int]:
    """Group records by `cfg.field`; the sorted distinct values map to portions 0..K-1.

    Raises:
        DataError: The column is missing, or its number of distinct values is not K.
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
    values = sorted({str(r[name]) for r in records})
    if len(values) != cfg.num_portions:
        shown = ", ".join(values[:10]) + (", ..." if len(values) > 10 else "")
        raise DataError(
            f"disperse.field '{name}' has {len(values)} distinct values ({shown}) but "
            f"disperse.num_portions is {cfg.num_portions}: one portion per value is needed; "
            f"set disperse.num_portions={len(values)}"
        )
    index = {v: k for k, v in enumerate(values)}
    return [index[str(r[name])] for r in records]

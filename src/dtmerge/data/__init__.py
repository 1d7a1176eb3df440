"""Stage 1: read instruction data in any common layout and normalise it for TRL."""

from dtmerge.data.formats import FORMATS, detect_format, normalise
from dtmerge.data.jsonl import read_jsonl, write_jsonl
from dtmerge.data.prepare import prepare_data
from dtmerge.data.readers import load_records

__all__ = [
    "FORMATS", "detect_format", "normalise", "read_jsonl", "write_jsonl", "prepare_data",
    "load_records",
]

"""Read raw instruction records from the places users keep them.

Local files are read by suffix (JSON, JSONL, CSV/TSV, Parquet, Arrow), a directory written by
`datasets.save_to_disk` with `datasets.load_from_disk`, and anything else is tried as a Hub
dataset id through `datasets.load_dataset` (for users with a network).
"""

from __future__ import annotations

import json
from pathlib import Path

from dtmerge.config import DataConfig
from dtmerge.data.jsonl import JsonlRecords, decode_utf8, read_jsonl
from dtmerge.errors import DataError

_FILE_SUFFIXES = {".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".arrow"}
# save_to_disk writes one of these marker files at the top of the directory.
_DISK_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")


def load_records(cfg: DataConfig) -> list[dict]:
    """Load the raw (not yet normalised) records that `cfg.path` points to.

    Args:
        cfg: The data section; `path`, and `split` for DatasetDicts, JSON objects holding one
            list per split, and Hub ids.

    Returns:
        One dict per example, with plain Python values.

    Raises:
        DataError: The file is missing, unreadable or malformed (JSONL errors name the line),
            the split does not exist, or a Hub dataset cannot be fetched.
    """
    path = Path(cfg.path).expanduser()
    if path.is_dir():
        return _read_saved_dataset(path, cfg.split)
    if path.is_file():
        return _read_file(path, cfg.split)
    if path.suffix.lower() in _FILE_SUFFIXES or cfg.path.startswith((".", "/", "~")):
        raise DataError(f"data file {cfg.path} not found (data.path, relative to {Path.cwd()})")
    return _read_hub(cfg.path, cfg.split)


def open_records(cfg: DataConfig):
    """Like `load_records`, but a local JSONL file comes back as a lazy `JsonlRecords`
    (parsed one record at a time) so the data stage never holds all of it."""
    path = Path(cfg.path).expanduser()
    if path.is_file() and path.suffix.lower() in (".jsonl", ".ndjson"):
        return JsonlRecords(path)
    return load_records(cfg)


def _read_file(path: Path, split: str) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return read_jsonl(path)
    if suffix == ".json":
        return _read_json(path, split)
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix == ".arrow":
        import datasets

        return datasets.Dataset.from_file(str(path)).to_list()
    raise DataError(
        f"{path}: unsupported file type '{suffix}'; use one of {sorted(_FILE_SUFFIXES)} "
        "or a directory written by datasets' save_to_disk"
    )


def _read_json(path: Path, split: str) -> list[dict]:
    text = decode_utf8(path.read_bytes(), path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # several objects, one per line: JSONL named .json
            return read_jsonl(path)
        raise DataError(
            f"{path}:{err.lineno}: invalid JSON ({err.msg} at column {err.colno})"
        ) from None
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items()
                 if isinstance(v, list) and v and isinstance(v[0], dict)}
        if len(lists) > 1 and split in lists:  # {"train": [...], "test": [...]}
            lists = {split: lists[split]}
        if len(lists) != 1:
            raise DataError(
                f"{path}: the top-level object must hold one list of examples (or one per "
                f"split, named by data.split='{split}'); found lists under "
                f"{sorted(lists) or 'no key'} (keys: {sorted(data)})"
            )
        data = next(iter(lists.values()))
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of examples, got {type(data).__name__}")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise DataError(f"{path}: example {i} is a {type(item).__name__}, not an object")
    return data


def _read_csv(path: Path, sep: str) -> list[dict]:
    import pandas as pd

    try:
        # Strings throughout and no NaN for empty cells: text columns stay text.
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path}: cannot parse as CSV: {err}") from None
    return frame.to_dict(orient="records")


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        # pyarrow's to_pylist keeps nested message lists as lists of dicts (pandas would
        # turn them into numpy arrays).
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: cannot read as Parquet: {err}") from None


def _read_saved_dataset(path: Path, split: str) -> list[dict]:
    if not any((path / m).exists() for m in _DISK_MARKERS):
        raise DataError(
            f"{path} is a directory but not one written by datasets' save_to_disk "
            f"(none of {', '.join(_DISK_MARKERS)}); point data.path at a data file instead"
        )
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(
                f"{path}: no split '{split}'; available: {', '.join(loaded)}; set data.split"
            )
        loaded = loaded[split]
    return loaded.to_list()


def _read_hub(name: str, split: str) -> list[dict]:
    import datasets

    try:
        return datasets.load_dataset(name, split=split).to_list()
    except Exception as err:  # offline, unknown id, gated, missing split...
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"data.path '{name}' is not a local file or directory, and loading it as a Hub "
            f"dataset (split '{split}') failed: {first_line}. Without a network, point "
            "data.path at a local JSON/JSONL/CSV/Parquet file or a save_to_disk directory."
        ) from None

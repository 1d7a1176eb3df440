"""JSON Lines helpers shared by every stage that reads or writes the run's data files.

Parsed by hand, line by line, so that a malformed line is reported with its file and line
number (`datasets`/`pandas` only say that parsing failed somewhere).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from dtmerge.errors import DataError
from dtmerge.process_guard import fault_point


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSON Lines file into a list of dicts, skipping blank lines.

    Args:
        path: The `.jsonl` file.

    Returns:
        One dict per non-blank line, in file order.

    Raises:
        DataError: The file is missing, a line is not valid JSON, or a line is not an object;
            the message names the file and the 1-based line number.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    records = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = decode_utf8(raw, path, lineno)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{path}:{lineno}: malformed JSON line ({err.msg} at column {err.colno}); "
                    f"fix or remove that line"
                ) from None
            if not isinstance(obj, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object per line, got {type(obj).__name__}"
                )
            records.append(obj)
    return records


def decode_utf8(raw: bytes, path: str | Path, line: int | None = None) -> str:
    """`raw` as text, or a DataError naming the file, line and column of the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        start = raw.rfind(b"\n", 0, err.start) + 1
        line = line or raw.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column "
                        f"{err.start - start + 1}); re-save the file as UTF-8") from None


def write_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    """Write records as JSON Lines atomically (temporary file, then rename).

    Args:
        path: Destination file; parent directories are created.
        records: JSON-serialisable dicts.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        fault_point(f"write {path.name}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

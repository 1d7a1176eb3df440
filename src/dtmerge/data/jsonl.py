"""JSON Lines helpers shared by every stage that reads or writes the run's data files.

Parsed by hand, line by line, so that a malformed line is reported with its file and line
number (`datasets`/`pandas` only say that parsing failed somewhere).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

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


class JsonlRecords:
    """A JSON Lines file as a read-only sequence of dicts, parsed when used, not held.

    Only the byte offset of each record is kept (8 bytes a record), so a stage can pass the
    paper's 326k examples to code written for a list of dicts (len, iteration, indexing)
    without holding them all as Python objects. Iterating reads the file front to back.
    """

    def __init__(self, path: str | Path):
        import numpy as np

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: file not found")
        offsets, linenos, pos = [], [], 0
        with open(self.path, "rb") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    offsets.append(pos)
                    linenos.append(lineno)
                pos += len(line)
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._linenos = np.asarray(linenos, dtype=np.int64)  # for error messages

    def __len__(self) -> int:
        return len(self._offsets)

    def _parse(self, line: bytes, index: int) -> dict:
        lineno = int(self._linenos[index])
        where = f"{self.path}:{lineno}"
        text = decode_utf8(line, self.path, lineno)  # a bad byte: file, line and column
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: malformed JSON line ({err.msg} at column {err.colno}); "
                            "fix or remove that line") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object per line, got {type(obj).__name__}")
        return obj

    def __getitem__(self, index: int) -> dict:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        with open(self.path, "rb") as fh:
            fh.seek(int(self._offsets[index]))
            return self._parse(fh.readline(), index)

    def write_subset(self, indices, path: Path) -> None:
        """Write the raw lines of the records at `indices`, in that order, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(self.path, "rb") as src, open(tmp, "wb") as out:
                for i in indices:
                    src.seek(int(self._offsets[i]))
                    line = src.readline()
                    out.write(line if line.endswith(b"\n") else line + b"\n")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def lines(self) -> Iterator[bytes]:
        """The raw line of each record, newline included, in file order."""
        with open(self.path, "rb") as fh:
            for line in fh:
                if line.strip():
                    yield line if line.endswith(b"\n") else line + b"\n"

    def __iter__(self) -> Iterator[dict]:
        for i, line in enumerate(self.lines()):
            yield self._parse(line, i)


def split_lines_by_label(records: JsonlRecords, labels, paths: list[Path]) -> None:
    """Copy each record's raw line to `paths[label]`, streaming; every file written atomically."""
    tmps = [p.with_name(f".{p.name}.tmp-{os.getpid()}") for p in paths]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
    handles = [open(t, "wb") for t in tmps]
    try:
        for line, label in zip(records.lines(), labels):
            handles[int(label)].write(line)
        for fh in handles:
            fh.close()
        for tmp, path in zip(tmps, paths):
            os.replace(tmp, path)
    finally:
        for fh, tmp in zip(handles, tmps):
            fh.close()
            tmp.unlink(missing_ok=True)

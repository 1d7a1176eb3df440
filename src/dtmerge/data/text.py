"""Plain text for the recipes that need general text (replay, EWC's Fisher).

A `.txt`/`.md` file holds one document per non-blank line; any other file the data readers
take (JSONL, JSON, CSV, Parquet, a saved dataset) holds one document per record in its
`text` column.
"""

from __future__ import annotations

from pathlib import Path

from dtmerge.errors import DataError

_PLAIN_SUFFIXES = {".txt", ".md", ".text"}


def read_text_documents(path: str | Path, column: str = "text") -> list[str]:
    """The non-empty documents of a text file.

    Raises:
        DataError: missing file, a record without a string `column`, or no document at all.
    """
    from dtmerge.config import DataConfig
    from dtmerge.data.readers import load_records

    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"text file {path} not found")
    if path.is_file() and path.suffix.lower() in _PLAIN_SUFFIXES:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not UTF-8 text (byte {err.start}); re-save it as UTF-8") from None
        docs = [line.strip() for line in lines if line.strip()]
    else:
        docs = []
        for i, record in enumerate(load_records(DataConfig(path=str(path))), start=1):
            value = record.get(column)
            if not isinstance(value, str):
                raise DataError(f"{path}: record {i} has no string '{column}' column "
                                f"(columns: {', '.join(sorted(record)) or 'none'})")
            if value.strip():
                docs.append(value.strip())
    if not docs:
        raise DataError(f"{path}: no text documents (one per line, or a '{column}' column)")
    return docs

"""Reading and writing safetensors files tensor by tensor (and row block by row block).

Written by hand because the safetensors library offers neither piece we need:
- `safe_open` memory-maps a whole shard, and every page it touches stays counted in the
  process's resident memory until the file is closed; merging K models that way costs K whole
  models of RSS (measured: a 400 MB shard read through `get_tensor` leaves ~640 MB peak RSS).
  `SafetensorsReader` reads one row block with `readinto` into a buffer we own, or maps just
  one tensor's bytes (`map_block`, to sample a few values) and unmaps them right after.
- `save_file` needs every tensor of a shard in memory at once. `ShardWriter` writes the header
  first (the output layout is known before merging) and then each block as it is produced.
The format (8-byte little-endian header length, JSON header, raw little-endian data) is the
documented safetensors layout, so the files load with the safetensors library and transformers.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from dtmerge.errors import MergeError
from dtmerge.process_guard import fault_point

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: file, dtype, shape and byte offset of its data."""

    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def row_numel(self) -> int:
        return math.prod(self.shape[1:]) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict]:
    """Parse a safetensors header. Returns (name -> TensorInfo, metadata)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > 100_000_000:
                raise ValueError("header length is implausible")
            header = json.loads(fh.read(length))
    except (OSError, ValueError, struct.error) as err:
        raise MergeError(f"{path}: not a readable safetensors file ({err})") from None
    metadata = header.pop("__metadata__", None) or {}
    infos = {}
    for name, h in header.items():
        if h["dtype"] not in DTYPES:
            raise MergeError(f"{path}: tensor '{name}' has unsupported dtype {h['dtype']}")
        infos[name] = TensorInfo(path, DTYPES[h["dtype"]], tuple(h["shape"]),
                                 8 + length + h["data_offsets"][0])
    return infos, metadata


_SEEK_LOCK = threading.Lock()


def read_at(fh, buf, offset: int) -> bool:
    """Fill `buf` from byte `offset` of the open file; False if the file ends first.

    Positional reads (`preadv`): the merge engine reads the next block in a second thread
    while the first works, and a shared file position would let them race."""
    view = memoryview(buf).cast("B")
    done = 0
    while done < len(view):
        if hasattr(os, "preadv"):
            got = os.preadv(fh.fileno(), [view[done:]], offset + done)
        else:  # pragma: no cover - no positional reads (Windows): one reader at a time
            with _SEEK_LOCK:
                fh.seek(offset + done)
                got = fh.readinto(view[done:])
        if not got:
            return False
        done += got
    return True


class SafetensorsReader:
    """Reads tensors or row blocks of tensors from one or more safetensors files.

    File handles stay open (one per shard); nothing is memory-mapped.
    """

    def __init__(self, files: list[Path]):
        self.infos: dict[str, TensorInfo] = {}
        self.metadata: dict = {}
        for f in files:
            infos, meta = read_header(f)
            self.infos.update(infos)
            self.metadata.update(meta)
        self._handles: dict[Path, object] = {}

    def _handle(self, path: Path):
        fh = self._handles.get(path)
        if fh is None:
            fh = self._handles[path] = open(path, "rb", buffering=0)
        return fh

    def read(self, name: str, rows: tuple[int, int] | None = None,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """The tensor `name`, or rows [start, end) of its first dimension.

        Read into `out` (a contiguous tensor of the stored dtype and the block's number of
        values, any shape) when given, so a merge reuses its block buffers; else a new tensor.
        """
        info = self.infos[name]
        shape = list(info.shape)
        offset = info.start
        if rows is not None and shape:
            start, end = rows
            itemsize = info.dtype.itemsize
            offset += start * info.row_numel * itemsize
            shape[0] = end - start
        if out is None or out.dtype != info.dtype or out.numel() != math.prod(shape):
            out = torch.empty(shape, dtype=info.dtype)
        else:
            out = out.view(shape)
        buf = out.view(-1).view(torch.uint8).numpy() if out.numel() else None
        if buf is not None and not read_at(self._handle(info.file), buf, offset):
            raise MergeError(f"{info.file}: truncated data for tensor '{name}'")
        return out

    def map_block(self, name: str, rows: tuple[int, int] | None = None):
        """A zero-copy read-only view of a block through a mapping of only its bytes.

        Returns (tensor, mapping). Drop the tensor, then pass the mapping to `unmap`, so the
        mapped pages stop counting towards resident memory. Never write to the tensor.
        """
        info = self.infos[name]
        shape = list(info.shape)
        offset = info.start
        if rows is not None and shape:
            itemsize = info.dtype.itemsize
            offset += rows[0] * info.row_numel * itemsize
            shape[0] = rows[1] - rows[0]
        numel = math.prod(shape)
        nbytes = numel * info.dtype.itemsize
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        mapping = mmap.mmap(self._handle(info.file).fileno(), nbytes + offset - start,
                            offset=start, access=mmap.ACCESS_READ)
        with warnings.catch_warnings():  # "non-writable buffer": we only ever read it
            warnings.simplefilter("ignore")
            tensor = torch.frombuffer(mapping, dtype=info.dtype, count=numel,
                                      offset=offset - start)
        return tensor.view(shape), mapping

    def close(self) -> None:
        for fh in self._handles.values():
            fh.close()
        self._handles.clear()


def parse_size(text: str | int) -> int:
    """'2GB' -> 2_000_000_000, '500MiB' -> 524_288_000 (shard sizes as transformers writes them)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)\s*", str(text), re.IGNORECASE)
    if not m:
        raise MergeError(f"shard_size '{text}' is not a size such as '2GB' or '500MB'")
    unit = m.group(2).upper().rstrip("B") or ""
    powers = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
              "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
    return int(float(m.group(1)) * powers[unit])


@dataclass(frozen=True)
class OutTensor:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def plan_shards(tensors: list[OutTensor], max_bytes: int) -> list[list[OutTensor]]:
    """Group tensors, in order, into shards of at most `max_bytes` (a bigger tensor gets its own)."""
    shards: list[list[OutTensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


class ShardWriter:
    """Writes a planned set of shards; tensors must be fed in plan order, block by block."""

    def __init__(self, out_dir: Path, tensors: list[OutTensor], shard_size: str | int,
                 prefix: str = "model"):
        self.out_dir = Path(out_dir)
        self.shards = plan_shards(tensors, parse_size(shard_size))
        n = len(self.shards)
        self.files = ([f"{prefix}.safetensors"] if n == 1 else
                      [f"{prefix}-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)])
        self._order = [(i, t) for i, shard in enumerate(self.shards) for t in shard]
        self._pos = 0          # index into _order of the tensor being written
        self._written = 0      # bytes of that tensor written so far
        self._fh = None
        self._shard = -1

    def _open_shard(self, i: int) -> None:
        if self._fh:
            self._fh.close()
        header, offset = {}, 0
        for t in self.shards[i]:
            header[t.name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                              "data_offsets": [offset, offset + t.nbytes]}
            offset += t.nbytes
        header["__metadata__"] = {"format": "pt"}
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # data must start 8-byte aligned
        self._fh = open(self.out_dir / self.files[i], "wb", buffering=0)
        self._fh.write(struct.pack("<Q", len(raw)) + raw)
        self._offset = 8 + len(raw)
        self._shard = i

    def _next(self, name: str, nbytes: int) -> OutTensor:
        shard, t = self._order[self._pos]
        if t.name != name:
            raise RuntimeError(f"writer expected tensor {t.name}, got {name}")
        if shard != self._shard:
            self._open_shard(shard)
        if self._written + nbytes > t.nbytes:
            raise RuntimeError(f"too many bytes written for {name}")
        return t

    def _advance(self, t: OutTensor, nbytes: int) -> None:
        self._offset += nbytes
        self._written += nbytes
        if self._written == t.nbytes:
            self._pos += 1
            self._written = 0

    def write(self, name: str, block: torch.Tensor) -> None:
        """Append the next row block of tensor `name` (blocks arrive in row order)."""
        data = block.to(self._order[self._pos][1].dtype).contiguous().view(-1)
        nbytes = data.numel() * data.element_size()
        t = self._next(name, nbytes)
        view = memoryview(data.view(torch.uint8).numpy()) if data.numel() else b""
        done = 0
        while done < len(view):
            done += os.pwrite(self._fh.fileno(), view[done:], self._offset + done)
        fault_point(f"merge tensor {name}")
        self._advance(t, nbytes)

    def close(self) -> dict[str, str]:
        """Finish the files; returns the weight map (tensor -> file) and writes the index if sharded."""
        if self._pos != len(self._order):
            raise RuntimeError(f"merge incomplete: {len(self._order) - self._pos} tensors missing")
        if self._fh:
            self._fh.close()
        for i in range(len(self.shards)):  # shards of only empty tensors were never opened
            if not (self.out_dir / self.files[i]).exists():
                self._open_shard(i)
                self._fh.close()
        weight_map = {t.name: self.files[i] for i, t in self._order}
        if len(self.files) > 1:
            total = sum(t.nbytes for _, t in self._order)
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (self.out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        return weight_map


def unmap(mapping) -> None:
    """Release a `map_block` mapping (its tensor must be gone)."""
    try:
        mapping.close()
    except BufferError:  # a view is still alive somewhere; the GC unmaps it later
        pass

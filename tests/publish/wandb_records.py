"""Read what an offline W&B run recorded, from its run-<id>.wandb file.

wandb (0.31) writes an offline run's config and summary only into that file (files/ keeps the
media and requirements), so the tests read it: W&B's log format (a 7-byte header, then 32 KiB
blocks of records each with a 7-byte header: CRC, length, type), each record a protobuf
`wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    run_id: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def _records(data: bytes):
    from wandb.proto import wandb_internal_pb2 as pb

    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def _key(item) -> str:
    return item.key or ".".join(item.nested_key)


def read_offline_run(run_dir: Path) -> OfflineRun:
    [path] = run_dir.glob("run-*.wandb")
    out = OfflineRun()
    for record in _records(path.read_bytes()):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            out.run_id, out.project, out.group, out.job_type = (r.run_id, r.project, r.run_group,
                                                                r.job_type)
            out.config.update({_key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            out.config.update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            out.summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "history":
            out.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
    return out

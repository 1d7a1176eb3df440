"""The data stage: raw records -> normalised `data/all.jsonl` and `data/heldout.jsonl`."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Iterable

from dtmerge.config import RunConfig
from dtmerge.data.formats import detect_format, normalise
from dtmerge.data.jsonl import JsonlRecords, write_jsonl
from dtmerge.data.readers import open_records
from dtmerge.errors import DataError
from dtmerge.rundir import RunDir, hash_obj, hash_path, run_job

JOB_NAME = "data"


def input_fingerprint(path: str) -> str:
    """Content hash of a local data file/directory; a Hub id stands for itself."""
    local = Path(path).expanduser()
    return hash_path(local) if local.exists() else f"hub:{path}"


def prepare_data(cfg: RunConfig, run: RunDir, log=print) -> dict:
    """Load, normalise, shuffle, cap and split the instruction data of a run.

    Skipped when the manifest already holds a finished "data" job with the same data config
    and input hash (and its outputs still exist).

    Args:
        cfg: The run config (its `data` section is used).
        run: The run directory; writes `run.all_data` and `run.heldout_data`.
        log: Progress messages go here.

    Returns:
        Summary dict: input, format, first_turn_only, records_read, dropped_empty, kept,
            max_examples, train, heldout.

    Raises:
        DataError: Unreadable or malformed input, unknown format, or no usable example.
    """
    input_hash = input_fingerprint(cfg.data.path)
    if cfg.data.mix:  # every mixed-in source's content too
        input_hash = hash_obj([input_hash, *(input_fingerprint(m.path) for m in cfg.data.mix)])
    # Without data.mix the fingerprint is the one runs had before the key existed.
    settings = cfg.data.model_dump(mode="json", exclude=None if cfg.data.mix else {"mix"})
    fingerprint = hash_obj({"data": settings, "input": input_hash,
                            "truncation": [cfg.model.path, cfg.train.max_length]})

    def work() -> dict:
        summary = _prepare(cfg, run, log)
        return {"summary": summary}

    run_job(run, JOB_NAME, fingerprint, work, inputs={"data": input_hash},
            outputs=(run.all_data, run.heldout_data), log=log)
    return run.job(JOB_NAME)["summary"]


def _prepare(cfg: RunConfig, run: RunDir, log) -> dict:
    dc = cfg.data
    raw = open_records(dc)  # a JSONL file is read lazily: records are not all held at once
    if not len(raw):
        raise DataError(f"{dc.path}: the data set is empty (no examples read)")
    fmt = detect_format(raw[0]) if dc.format == "auto" else dc.format
    dropped = []

    def normalised():
        for i, item in enumerate(raw):
            try:
                record = normalise(item, fmt, dc.first_turn_only)
            except DataError as err:
                raise DataError(f"{dc.path}: example {i + 1} (format {fmt}): {err}") from None
            if record is None:
                dropped.append(i)
            else:
                yield record

    # Normalised records go to a scratch file as they are made; the shuffle, cap and split
    # below move byte offsets, and the outputs are copied line by line from that file.
    scratch = run.data_dir / f".normalised.tmp-{os.getpid()}.jsonl"
    try:
        write_jsonl(scratch, normalised())
        if dc.mix:  # every record tagged with its source, the mixed-in sets at their ratios
            from dtmerge.data.mix import mixed_records

            write_jsonl(scratch, mixed_records(dc, list(JsonlRecords(scratch))))
        records = JsonlRecords(scratch)
        summary = _shuffle_split_write(cfg, run, records, len(raw), len(dropped), fmt, log)
    finally:
        scratch.unlink(missing_ok=True)
    return summary


def _shuffle_split_write(cfg: RunConfig, run: RunDir, records: JsonlRecords, n_raw: int,
                         dropped: int, fmt: str, log) -> dict:
    dc = cfg.data
    if dropped:
        log(f"data: dropped {dropped} of {n_raw} examples with an empty prompt or response")
    if not len(records):
        raise DataError(
            f"{dc.path}: all {n_raw} examples have an empty prompt or response; "
            "nothing to train on"
        )
    # Shuffle before capping and splitting so both are a seeded random sample, not a head.
    # (Shuffling the positions gives the same order as shuffling the records themselves.)
    order = list(range(len(records)))
    random.Random(dc.seed).shuffle(order)
    kept = len(order)
    if dc.max_examples is not None:
        order = order[: dc.max_examples]
    n_heldout = round(len(order) * dc.eval_fraction)
    if dc.eval_fraction > 0 and len(order) > 1:
        n_heldout = min(max(n_heldout, 1), len(order) - 1)
    heldout, train = order[:n_heldout], order[n_heldout:]

    records.write_subset(heldout, run.heldout_data)
    records.write_subset(train, run.all_data)
    truncated = count_truncated(cfg, (records[i] for i in train))
    summary = {
        "input": dc.path, "format": fmt, "first_turn_only": dc.first_turn_only,
        "records_read": n_raw, "dropped_empty": dropped, "kept": kept,
        "max_examples": dc.max_examples, "train": len(train), "heldout": len(heldout),
        "truncated": truncated, "max_length": cfg.train.max_length,
    }
    log(f"data: {n_raw} examples read ({fmt}) -> {len(train)} train, {len(heldout)} held out")
    if truncated:
        log(f"data: {truncated} of {len(train)} training examples are longer than "
            f"train.max_length={cfg.train.max_length} tokens and will be cut to it "
            "(raise train.max_length to keep them whole)")
    return summary


def count_truncated(cfg: RunConfig, records: Iterable[dict], chunk: int = 1000) -> int | None:
    """How many records (prompt + completion) exceed train.max_length tokens; None when the
    tokenizer cannot be loaded here (e.g. a Hub model offline: training will say so)."""
    from dtmerge.errors import DtmError
    from dtmerge.models import load_tokenizer

    try:
        tokenizer = load_tokenizer(cfg.model)
    except (DtmError, OSError, ValueError):
        return None
    # Tokenised as training sees them: the chat template over prompt + completion messages,
    # a chunk at a time so paper-scale data is never tokenised all at once.
    count, batch = 0, []
    for record in [*records, None]:
        if record is not None:
            batch.append(record["prompt"] + record["completion"])
        if batch and (record is None or len(batch) == chunk):
            encoded = tokenizer.apply_chat_template(batch, tokenize=True)["input_ids"]
            count += sum(len(ids) > cfg.train.max_length for ids in encoded)
            batch = []
    return count

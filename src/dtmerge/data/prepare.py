"""The data stage: raw records -> normalised `data/all.jsonl` and `data/heldout.jsonl`."""

from __future__ import annotations

import random
from pathlib import Path

from dtmerge.config import RunConfig
from dtmerge.data.formats import detect_format, normalise
from dtmerge.data.jsonl import write_jsonl
from dtmerge.data.readers import load_records
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
    raw = load_records(dc)
    if not raw:
        raise DataError(f"{dc.path}: the data set is empty (no examples read)")
    fmt = detect_format(raw[0]) if dc.format == "auto" else dc.format

    records, dropped = [], 0
    for i, item in enumerate(raw):
        try:
            record = normalise(item, fmt, dc.first_turn_only)
        except DataError as err:
            raise DataError(f"{dc.path}: example {i + 1} (format {fmt}): {err}") from None
        if record is None:
            dropped += 1
        else:
            records.append(record)
    if dropped:
        log(f"data: dropped {dropped} of {len(raw)} examples with an empty prompt or response")
    if not records:
        raise DataError(
            f"{dc.path}: all {len(raw)} examples have an empty prompt or response; "
            "nothing to train on"
        )

    if dc.mix:
        from dtmerge.data.mix import mixed_records

        records = mixed_records(dc, records)
    # Shuffle before capping and splitting so both are a seeded random sample, not a head.
    random.Random(dc.seed).shuffle(records)
    kept = len(records)
    if dc.max_examples is not None:
        records = records[: dc.max_examples]
    n_heldout = round(len(records) * dc.eval_fraction)
    if dc.eval_fraction > 0 and len(records) > 1:
        n_heldout = min(max(n_heldout, 1), len(records) - 1)
    heldout, train = records[:n_heldout], records[n_heldout:]

    write_jsonl(run.heldout_data, heldout)
    write_jsonl(run.all_data, train)
    truncated = count_truncated(cfg, train)
    summary = {
        "input": dc.path, "format": fmt, "first_turn_only": dc.first_turn_only,
        "records_read": len(raw), "dropped_empty": dropped, "kept": kept,
        "max_examples": dc.max_examples, "train": len(train), "heldout": len(heldout),
        "truncated": truncated, "max_length": cfg.train.max_length,
    }
    log(f"data: {len(raw)} examples read ({fmt}) -> {len(train)} train, {len(heldout)} held out")
    if truncated:
        log(f"data: {truncated} of {len(train)} training examples are longer than "
            f"train.max_length={cfg.train.max_length} tokens and will be cut to it "
            "(raise train.max_length to keep them whole)")
    return summary


def count_truncated(cfg: RunConfig, records: list[dict]) -> int | None:
    """How many records (prompt + completion) exceed train.max_length tokens; None when the
    tokenizer cannot be loaded here (e.g. a Hub model offline: training will say so)."""
    from dtmerge.errors import DtmError
    from dtmerge.models import load_tokenizer

    try:
        tokenizer = load_tokenizer(cfg.model)
    except (DtmError, OSError, ValueError):
        return None
    # Tokenised as training sees them: the chat template over prompt + completion messages.
    encoded = tokenizer.apply_chat_template([r["prompt"] + r["completion"] for r in records],
                                            tokenize=True)["input_ids"]
    return sum(len(ids) > cfg.train.max_length for ids in encoded)

"""Dispersing a run's data, for its own DTM: `data/all.jsonl` -> `data/portion_<k>.jsonl` +
`data/summary.json` (the dtm recipe's prepare step calls `disperse_portions`)."""

from __future__ import annotations

from collections import Counter

from dtmerge.config import RunConfig
from dtmerge.data.jsonl import JsonlRecords, split_lines_by_label
from dtmerge.disperse.registry import STRATEGIES
from dtmerge.disperse.summary import summarise_portions
from dtmerge.errors import DataError
from dtmerge.rundir import (OWN_DTM, RunDir, atomic_write_json, hash_file, hash_obj,
                            read_state_json, rerun_hint, run_job)

JOB_NAME = "disperse"


def assign_portions(records: list[dict], cfg: RunConfig) -> list[int]:
    """Run the configured strategy and check the split is usable (K <= n, no empty portion).

    Raises:
        DataError: K exceeds the number of examples, or a portion came out empty.
        ConfigError: Unknown strategy name.
    """
    dc = cfg.disperse
    k, n = dc.num_portions, len(records)
    if k > n:
        raise DataError(
            f"disperse.num_portions={k} but the training data has only {n} examples; "
            f"lower num_portions to at most {n} or add data"
        )
    strategy = STRATEGIES.get(dc.strategy)
    assignment = strategy(records, dc)
    if len(assignment) != n or any(not 0 <= a < k for a in assignment):
        raise ValueError(f"strategy '{dc.strategy}' returned an invalid assignment")  # a bug
    sizes = Counter(assignment)
    empty = [p for p in range(k) if sizes[p] == 0]
    if empty:
        raise DataError(
            f"the '{dc.strategy}' split left portion(s) {', '.join(map(str, empty))} of {k} "
            f"empty ({n} examples): lower disperse.num_portions, or use disperse.strategy=random "
            "(balanced sizes)"
        )
    return assignment


def disperse_portions(cfg: RunConfig, run: RunDir, log=print) -> dict:
    """Split the run's training data into K portions and describe them.

    Skipped when the manifest holds a finished "disperse" job with the same disperse config
    and `all.jsonl` hash (and the portion files still exist).

    Args:
        cfg: The run config (its `disperse` section is used).
        run: The run directory; reads `run.all_data`, writes `run.portion("dtm", k)` and
            `run.data_dir / "summary.json"`.
        log: Progress messages go here.

    Returns:
        The summary written to `summary.json`: strategy settings, total, and per portion
        size, share, source mix and distinctive terms.

    Raises:
        DataError: No data stage output yet, K too large, or an empty portion.
    """
    if not run.all_data.exists():
        raise DataError(f"{run.all_data} not found: run the data stage first")
    run.require_finished("data", run.all_data)
    if cfg.disperse.num_portions == 1:  # `dtm run` refuses it in the preflight
        log("disperse: num_portions=1 is plain SFT on all the data; merging one model changes "
            "nothing (use num_portions >= 2 for DTM)")
    data_hash = hash_file(run.all_data)
    fingerprint = hash_obj({"disperse": cfg.disperse.model_dump(mode="json"), "all": data_hash})
    summary_path = run.data_dir / "summary.json"
    outputs = [run.portion(OWN_DTM, k) for k in range(cfg.disperse.num_portions)] + [summary_path]
    def work() -> dict:
        summary = _disperse(cfg, run, log)
        atomic_write_json(summary_path, summary)
        return {"sizes": [p["size"] for p in summary["portions"]]}

    run_job(run, JOB_NAME, fingerprint, work, inputs={"all.jsonl": data_hash}, outputs=outputs,
            log=log)

    return read_state_json(summary_path, rerun_hint(f"dtm disperse {run.root}"))


def _disperse(cfg: RunConfig, run: RunDir, log) -> dict:
    dc = cfg.disperse
    # Parsed when a strategy looks at them, never all held as dicts (326k examples at paper
    # scale); the portions are the records' own lines, copied through.
    records = JsonlRecords(run.all_data)
    assignment = assign_portions(records, cfg)
    files = [run.portion(OWN_DTM, k) for k in range(dc.num_portions)]
    split_lines_by_label(records, assignment, files)
    # Portions left over from an earlier run with a larger K would confuse later stages.
    stale = [p for p in run.data_dir.glob("portion_*.jsonl")
             if _portion_index(p) >= dc.num_portions]
    run.retire(stale, [], f"disperse.num_portions is now {dc.num_portions}", log)

    field = dc.field if dc.strategy == "field" else None
    portions = summarise_portions(records, assignment, dc.num_portions, field)
    summary = {"strategy": dc.strategy, "num_portions": dc.num_portions, "seed": dc.seed,
               "total": len(records), "portions": portions}
    if dc.strategy == "kmeans":
        summary.update(embed_on=dc.embed_on, encoder=dc.encoder)
    if field:
        summary["field"] = field
    for p in portions:
        terms = ", ".join(p["distinctive_terms"]) or "-"
        log(f"disperse: portion {p['portion']}: {p['size']} examples; terms: {terms}")
    return summary


def _portion_index(path) -> float:
    """k of `portion_<k>.jsonl` (infinity for a name that is not a portion of any K)."""
    index = path.stem.split("_", 1)[1]
    return int(index) if index.isdigit() else float("inf")

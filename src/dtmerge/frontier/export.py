"""`dtm frontier RUN --export NAME`: write a scored candidate as a standard model directory.

The candidate is merged again from its recorded spec (merges are deterministic, DARE's masks
included), straight into the destination through the engine's atomic write; an existing
directory is replaced only with `overwrite`. A candidate whose inputs changed since it was
scored is refused: its scores would not describe the exported model.
"""

from __future__ import annotations

from pathlib import Path

from dtmerge.errors import ConfigError
from dtmerge.frontier.grid import Candidate
from dtmerge.frontier.score import FrontierContext, merge_candidate
from dtmerge.frontier.stage import RESULT_FILE
from dtmerge.rundir import RunDir, read_state_json, rerun_hint


def export_candidate(cfg, run: RunDir, name: str, out: str | Path | None = None,
                     overwrite: bool = False, log=print) -> Path:
    """Merge candidate `name` ("chosen": the frontier's choice) into `out` (default
    models/frontier_<name>); returns the directory written."""
    path = run.root / "frontier" / RESULT_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: run `dtm frontier {run.root}` before --export")
    summary = read_state_json(path, rerun_hint(f"dtm frontier {run.root}"))
    if name == "chosen":
        name = summary["chosen"]["name"]
        if not summary["chosen"].get("frontier_candidate", True):
            raise ConfigError(f"the decision chose {name}, a model of the run rather than a "
                              f"frontier candidate: export it with `dtm export {run.root} answer "
                              "--out DIR`")
    specs = {c["name"]: c for c in summary["candidates"]}
    if name not in specs:
        raise ConfigError(f"--export {name!r}: no such candidate; scored: "
                          f"{', '.join(sorted(specs))} (or 'chosen')")
    spec = specs[name]
    cand = Candidate(spec["method"], float(spec["scale"]), tuple(spec["subset"]),
                     spec["params"], len(spec["subset"]) == cfg.disperse.num_portions)
    ctx = FrontierContext.open(cfg, run, log)
    scored = [j for j in ("test", "validation", "prune")
              if (run.job(f"frontier:{name}:{j}") or {}).get("status") == "done"]
    if not scored or run.job(f"frontier:{name}:{scored[0]}")["inputs"].get("model") != \
            ctx.model_key(cand):
        raise ConfigError(f"candidate {name}: its base or sub-models changed since it was scored "
                          f"(or it never was); rerun `dtm frontier {run.root}` first")
    dest = Path(out) if out else run.model(f"frontier_{name}")
    if dest.exists() and not overwrite:
        raise ConfigError(f"{dest} exists; pass --overwrite to replace it, or --out another "
                          "directory")
    log(f"[frontier] exporting {name} (scored on {', '.join(scored)} items) to {dest}")
    merge_candidate(ctx, cand, dest)
    return dest

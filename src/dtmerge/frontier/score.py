"""Merge one candidate into the frontier's cache and score it on one pass's items.

Each (candidate, pass) is a manifest job `frontier:<name>:<pass>` whose fingerprint covers the
candidate, the base and sub-model files, the evaluation settings and the items, so a killed
frontier resumes where it stopped and never scores a finished candidate again. Scoring calls
the evaluate stage's `evaluate_model` with the run's own `cfg.eval`: a candidate is measured
exactly as `dtm eval` measures every variant, on the pass's items only.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from dtmerge.evaluate.split import SPLIT_KEYS
from dtmerge.frontier.grid import Candidate
from dtmerge.frontier.items import samples_of
from dtmerge.merge.engine import merge_models, merge_scaled
from dtmerge.merge.options import data_for_merge
from dtmerge.rundir import OWN_DTM, RunDir, hash_model, hash_obj, hash_path, run_job


@dataclass
class FrontierContext:
    """What every candidate of one frontier shares: the run, its inputs and their hashes."""

    cfg: object  # RunConfig
    run: RunDir
    base: str
    subs: list[Path]
    input_hashes: dict[str, str]
    log: object = print

    @classmethod
    def open(cls, cfg, run: RunDir, log=print) -> "FrontierContext":
        from dtmerge.errors import MergeError
        from dtmerge.models import resolve_model_path

        base = resolve_model_path(cfg.model)
        subs = [run.sub_model(OWN_DTM, i) for i in range(cfg.disperse.num_portions)]
        missing = [str(p) for p in subs if not p.exists()]
        if missing:
            raise MergeError(f"dtm frontier: sub-model(s) {', '.join(missing)} not found; run "
                             "`dtm train` on this run directory first")
        hashes = {"base": hash_model(base),
                  **{p.name: hash_path(p) for p in subs}}
        return cls(cfg, run, base, subs, hashes, log)

    @property
    def root(self) -> Path:
        return self.run.root / "frontier"

    def model_key(self, cand: Candidate) -> str:
        used = {k: v for k, v in self.input_hashes.items()
                if k == "base" or int(k.split("_")[1]) in cand.subset}
        return hash_obj({"candidate": cand.spec(), "inputs": used})

    def model_dir(self, cand: Candidate) -> Path:
        return self.root / "cache" / f"{cand.name}-{self.model_key(cand)[:8]}"

    def eval_path(self, cand_name: str, which: str) -> Path:
        return self.root / "eval" / f"{cand_name}.{which}.json"


def ensure_model(ctx: FrontierContext, cand: Candidate) -> Path:
    """The candidate's merged model in the cache (merged now unless already there, complete:
    the merge writes atomically, so a killed merge leaves nothing that looks finished)."""
    out = ctx.model_dir(cand)
    if not (out / "merge_record.json").is_file():
        merge_candidate(ctx, cand, out)
    return out


def premerge(ctx: FrontierContext, cands: list[Candidate]) -> None:
    """Merge the candidates that differ only in scale together: the sub-models are read and
    combined once, and each scale is written to its own cache directory."""
    groups: dict[tuple, list[Candidate]] = {}
    for cand in cands:
        if not (ctx.model_dir(cand) / "merge_record.json").is_file():
            key = (cand.method, cand.subset, tuple(sorted(cand.params.items())))
            groups.setdefault(key, []).append(cand)
    for group in groups.values():
        if len(group) == 1:
            continue  # merged when scored
        first = group[0]
        fisher = data_for_merge(first.method, [ctx.run.portion(OWN_DTM, i) for i in first.subset])
        merge_scaled(ctx.base, [ctx.subs[i] for i in first.subset],
                     {ctx.model_dir(c): c.scale for c in group},
                     first.options(fisher_data=fisher), log=ctx.log)


def merge_candidate(ctx: FrontierContext, cand: Candidate, out: Path) -> dict:
    """Merge `cand` into `out` with the streaming engine (atomic: all or nothing)."""
    fisher = data_for_merge(cand.method, [ctx.run.portion(OWN_DTM, i) for i in cand.subset])
    return merge_models(ctx.base, [ctx.subs[i] for i in cand.subset], out,
                        cand.options(fisher_data=fisher), log=ctx.log)


def drop_model(ctx: FrontierContext, cand: Candidate) -> None:
    if not ctx.cfg.frontier.keep_models:
        shutil.rmtree(ctx.model_dir(cand), ignore_errors=True)


def pass_fingerprint(ctx: FrontierContext, cand: Candidate, items: dict[str, list]) -> str:
    settings = {k: v for k, v in ctx.cfg.eval.model_dump(mode="json").items()
                if k not in SPLIT_KEYS}
    return hash_obj({"model": ctx.model_key(cand), "eval": settings,
                     "items": {t: [str(i) for i in ids] for t, ids in items.items()}})


def is_scored(ctx: FrontierContext, cand: Candidate, which: str, items: dict[str, list]) -> bool:
    return (ctx.eval_path(cand.name, which).exists()
            and ctx.run.is_done(f"frontier:{cand.name}:{which}", pass_fingerprint(ctx, cand, items)))


def score_candidate(ctx: FrontierContext, cand: Candidate, which: str,
                    items: dict[str, list]) -> Path:
    """Score `cand` on `items` (job `frontier:<name>:<which>`); returns its eval JSON path."""
    from dtmerge.evaluate.harness import evaluate_model

    fingerprint = pass_fingerprint(ctx, cand, items)
    out = ctx.eval_path(cand.name, which)
    job = f"frontier:{cand.name}:{which}"
    if not out.exists() and ctx.run.is_done(job, fingerprint):
        ctx.run.update_job(job, status="stale")  # its result file was deleted: score again

    def work() -> dict:
        model = ensure_model(ctx, cand)
        ctx.log(f"[frontier] {cand.name}: scoring {sum(map(len, items.values()))} {which} items")
        result = evaluate_model(model, ctx.cfg.eval, out, cand.name, samples=samples_of(items))
        return {"outputs": [str(out)], "candidate": cand.spec(),
                "scores": {t: r["score"] for t, r in result["tasks"].items()}}

    run_job(ctx.run, job, fingerprint, work, inputs={"model": ctx.model_key(cand)}, log=ctx.log)
    return out

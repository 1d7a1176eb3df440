"""`dtm`: Disperse-Then-Merge, a recipe like the others: `prepare` disperses the data into K
portions (the disperse library), `jobs` trains a sub-model on each, `build` merges them.

The entry labelled `dtm` is the run's own: its settings are the `disperse:` and `merge:`
sections, its portions `data/portion_<k>.jsonl` (with `data/summary.json`), its sub-models
`models/sub_<k>`, its manifest jobs `disperse` and `merge`. Further entries with their own
label (e.g. `dtm-k2`) override those sections with their parameters: portions under
`data/<label>/`, sub-models `models/<label>_sub_<k>`, jobs `disperse:<label>` and
`merge:<label>`. Both merge the same way (see `build`), into `models/<label>`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from dtmerge.data.jsonl import read_jsonl, write_jsonl
from dtmerge.disperse.stage import assign_portions, disperse_portions
from dtmerge.errors import MergeError
from dtmerge.recipes.base import Recipe, RecipeParams, content_hash
from dtmerge.merge.options import MergeOptions, data_for_merge
from dtmerge.rundir import OWN_DTM, RunDir, hash_model, sub_model_name
from dtmerge.train.job import TrainJob


class DtmParams(RecipeParams):
    num_portions: int | None = Field(None, ge=1, description="K (default: disperse.num_portions)")
    strategy: str | None = None
    embed_on: str | None = None
    encoder: str | None = None
    field: str | None = None
    seed: int | None = None
    merge_method: str | None = None
    merge_params: dict[str, Any] | None = None
    merge_weights: list[float] | None = None


class Dtm(Recipe):
    name = "dtm"
    Params = DtmParams

    @property
    def own(self) -> bool:
        """The run's own DTM (disperse stage portions, merge stage) rather than an extra one."""
        return self.label == OWN_DTM

    def disperse_config(self):
        p = self.params
        update = {k: getattr(p, k) for k in ("num_portions", "strategy", "embed_on", "encoder",
                                             "field", "seed") if getattr(p, k) is not None}
        return self.cfg.disperse.model_copy(update=update)

    def check(self) -> None:
        from dtmerge.disperse.registry import STRATEGIES
        from dtmerge.errors import ConfigError
        from dtmerge.merge.methods import METHODS

        d = self.disperse_config()
        STRATEGIES.check(d.strategy)  # unknown names fail here, with close matches
        METHODS.check(self.params.merge_method or self.cfg.merge.method)
        if d.strategy == "field" and not d.field:
            raise ConfigError(f"recipes: {self.label}: strategy 'field' needs `field:` (the column "
                              "to group by)")
        weights = self.params.merge_weights
        if weights is not None and len(weights) != d.num_portions:
            raise ConfigError(f"recipes: {self.label}: merge_weights has {len(weights)} entries "
                              f"for {d.num_portions} sub-models")

    @property
    def k(self) -> int:
        return self.disperse_config().num_portions

    def portion(self, run: RunDir, i: int):
        return run.portion(self.label, i)

    def job_name(self, step: str) -> str:
        return step if self.own else super().job_name(step)  # the own DTM's: `disperse`, `merge`

    def prepare(self, run: RunDir, log=print) -> None:
        if self.own:  # its portions are the run's, described in data/summary.json
            disperse_portions(self.cfg, run, log)
            return
        dcfg = self.cfg.model_copy(update={"disperse": self.disperse_config()})

        def work():
            records = read_jsonl(run.all_data)
            assignment = assign_portions(records, dcfg)
            for i in range(self.k):
                write_jsonl(self.portion(run, i), [r for r, a in zip(records, assignment) if a == i])
            log(f"{self.label}: {self.k} portions of sizes "
                + ", ".join(str(assignment.count(i)) for i in range(self.k)))
            return {"outputs": [str(self.portion(run, i)) for i in range(self.k)]}

        self.step(run, "disperse", {"all": content_hash(run.all_data),
                                    "disperse": dcfg.disperse.model_dump(mode="json")}, work, log,
                  outputs=[self.portion(run, i) for i in range(self.k)])

    def jobs(self, run: RunDir) -> list[TrainJob]:
        return [TrainJob(sub_model_name(self.label, i), self.portion(run, i),
                         run.sub_model(self.label, i)) for i in range(self.k)]

    def build(self, run: RunDir, log=print) -> None:
        """Merge the K sub-models with `merge_config()`, fingerprinted on everything the merge
        reads: that whole config, the base model, each sub-model and, when the method reads
        data, each portion."""
        merge = self.merge_config()
        subs = [run.sub_model(self.label, i) for i in range(self.k)]
        missing = [str(p) for p in subs if not p.exists()]
        if missing:
            raise MergeError(f"cannot merge {self.label}: sub-model(s) {', '.join(missing)} not "
                             f"found; run `dtm train {run.root}` first")
        for sub in subs:
            run.require_finished(f"train:{sub.name}", sub)
        fisher = data_for_merge(merge.method, [self.portion(run, i) for i in range(self.k)])
        base = self.base_model()
        out = run.model(self.label)

        def work():
            from dtmerge.merge.engine import merge_models  # torch: only where a merge runs

            options = MergeOptions.from_config(merge, fisher_data=fisher)
            record = merge_models(base, subs, out, options, log=log)
            return {"outputs": [str(out)], "method": record["method"]}

        inputs = {"merge": merge.model_dump(mode="json"), "base": hash_model(base),
                  "subs": [content_hash(s) for s in subs],
                  "portions": [content_hash(p) for p in fisher or []]}
        self.step(run, "merge", inputs, work, log, outputs=[out])

    def merge_config(self):
        """The run's `merge:` section with this entry's overrides: every setting the merge reads
        (so every one of them is in the merge's fingerprint)."""
        p = self.params
        update = {key: getattr(p, f"merge_{key}") for key in ("method", "params", "weights")
                  if getattr(p, f"merge_{key}") is not None}
        return self.cfg.merge.model_copy(update=update)

    def describe(self, run: RunDir) -> dict:
        return {**super().describe(run), "num_portions": self.k}

"""`ensemble`: the K sub-models of a DTM entry scored as one lm-eval model that averages their
next-token probabilities (evaluate/ensemble.py): the paper's reference for what merging
should approach, at K times the inference cost."""

from __future__ import annotations

from pydantic import Field

from dtmerge.errors import ConfigError
from dtmerge.recipes.base import Recipe, RecipeParams, content_hash
from dtmerge.recipes.dtm import Dtm, DtmParams
from dtmerge.rundir import RunDir, hash_model
from dtmerge.train.job import TrainJob


class EnsembleParams(RecipeParams):
    of: str = Field("dtm", description="Label of the dtm entry whose sub-models are averaged")


class Ensemble(Recipe):
    name = "ensemble"
    Params = EnsembleParams

    def dtm(self) -> Dtm:
        entries = self.cfg.recipes or []
        for e in entries:
            if e.name == "dtm" and e.variant == self.params.of:
                return Dtm(self.cfg, e.variant, DtmParams.model_validate(e.params))
        if self.params.of == "dtm":
            return Dtm(self.cfg, "dtm", DtmParams())
        raise ConfigError(f"recipes: {self.label}: of='{self.params.of}' is not the label of a "
                          "dtm entry")

    def check(self) -> None:
        self.dtm()

    @property
    def inference_cost(self) -> int:  # K forward passes per token
        return self.dtm().k

    def jobs(self, run: RunDir) -> list[TrainJob]:
        return self.dtm().jobs(run)

    def build(self, run: RunDir, log=print) -> None:
        members = [str(j.out) for j in self.jobs(run)]
        hashes = [content_hash(m) for m in members]
        base, out = self.base_model(), run.model(self.label)

        def work():
            from dtmerge.evaluate.ensemble import write_ensemble_dir  # torch and lm-eval

            write_ensemble_dir(out, members, base, hashes)
            return {"outputs": [str(out)]}

        self.step(run, "build", {"members": members, "hashes": hashes, "base": hash_model(base)},
                  work, log, outputs=[out])

"""`uniform_soup`: K models each trained on ALL the data with a different seed, averaged in
weight space (Wortsman et al., 2022). Same data as SFT, same number of models as DTM: what
averaging alone buys, without dispersal.

SFT is such a model (all the data, the run's own seed), so it is the soup's first member and
only K - 1 more are trained: a soup costs K - 1 SFT runs, not K (on the demo's recipes it
was the costliest recipe)."""

from __future__ import annotations

from pydantic import Field

from dtmerge.recipes.base import Recipe, RecipeParams, content_hash
from dtmerge.rundir import RunDir, hash_model
from dtmerge.train.job import TrainJob


class UniformSoupParams(RecipeParams):
    num_models: int | None = Field(None, ge=2, description="K (default: disperse.num_portions)")
    merge_method: str = "linear"


class UniformSoup(Recipe):
    name = "uniform_soup"
    Params = UniformSoupParams

    @property
    def k(self) -> int:
        return self.params.num_models or max(2, self.cfg.disperse.num_portions)

    def seeds(self) -> list[int]:
        """Distinct seeds: member 0 is SFT (train.seed), member i uses train.seed + i."""
        return [self.cfg.train.seed + i for i in range(self.k)]

    def jobs(self, run: RunDir) -> list[TrainJob]:
        more = [TrainJob(f"{self.label}_{i}", run.all_data, run.model(f"{self.label}_{i}"),
                         spec={"seed": seed}) for i, seed in enumerate(self.seeds()) if i > 0]
        return [self.sft_job(run), *more]

    def build(self, run: RunDir, log=print) -> None:
        members = [j.out for j in self.jobs(run)]
        base, out = self.base_model(), run.model(self.label)

        def work():
            from dtmerge.merge.engine import merge_models  # torch: only where a merge runs

            merge_models(base, members, out, method=self.params.merge_method, log=log)
            return {"outputs": [str(out)]}

        self.step(run, "merge", {"members": [content_hash(m) for m in members],
                                 "base": hash_model(base)}, work, log, outputs=[out])

    def describe(self, run: RunDir) -> dict:
        return {**super().describe(run), "seeds": self.seeds()}

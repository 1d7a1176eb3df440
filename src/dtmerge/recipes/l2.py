"""`l2`: SFT plus (coef / 2) * ||W - W0||^2 over the trained weights (for LoRA, on the update
scale * B @ A the adapter makes; see train/penalties.py)."""

from __future__ import annotations

from pydantic import Field

from dtmerge.recipes.base import Recipe, RecipeParams
from dtmerge.rundir import RunDir
from dtmerge.train.job import TrainJob


class L2Params(RecipeParams):
    coef: float = Field(0.1, gt=0, description="lambda in (lambda / 2) * ||W - W0||^2")


class L2(Recipe):
    name = "l2"
    Params = L2Params

    def jobs(self, run: RunDir) -> list[TrainJob]:
        spec = {"penalty": {"kind": "l2", "coef": self.params.coef}}
        return [TrainJob(self.label, run.all_data, run.model(self.label), spec=spec)]

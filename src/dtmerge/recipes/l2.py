"""`l2`: SFT plus (coef / 2) * ||W - W0||^2 over the trained weights (for LoRA, on the update
scale * B @ A the adapter makes; see train/penalties.py).

`coef: auto` (the default) chooses the coefficient by a short sweep on the held-out split of
the instruction data (recipes/calibrate.py); a number uses that coefficient as given.
"""

from __future__ import annotations

from dtmerge.recipes.base import Recipe
from dtmerge.recipes.calibrate import (
    AUTO, PenaltyParams, calibrate, check_auto, describe_calibration, resolved_coef,
)
from dtmerge.rundir import RunDir
from dtmerge.train.job import TrainJob


class L2Params(PenaltyParams):
    """coef: lambda in (lambda / 2) * ||W - W0||^2, or auto."""


class L2(Recipe):
    name = "l2"
    Params = L2Params

    def check(self) -> None:
        check_auto(self)

    def penalty(self) -> dict:
        return {"kind": "l2"}

    def prepare(self, run: RunDir, log=print) -> None:
        if self.params.coef == AUTO:
            calibrate(self, run, self.penalty(), log)

    def jobs(self, run: RunDir) -> list[TrainJob]:
        spec = {"penalty": {**self.penalty(), "coef": resolved_coef(self, run)}}
        return [TrainJob(self.label, run.all_data, run.model(self.label), spec=spec)]

    def describe(self, run: RunDir) -> dict:
        return describe_calibration(self, run, super().describe(run))

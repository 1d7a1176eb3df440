"""`ewc`: SFT plus (coef / 2) * sum_i F_i (W - W0)_i^2, F the base model's diagonal Fisher on
general text (Kirkpatrick et al., 2017; see train/penalties.py).

`text` is a plain-text file (one document per line, or a `text` column) the base model should
keep knowing; `dtm demo` passes the testbed's pre-training text. It must not be text the
report scores (that would tune the recipe on its test items).

`coef: auto` (the default) chooses the coefficient by a short sweep on the held-out split of
the instruction data (recipes/calibrate.py); a number uses that coefficient as given.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from dtmerge.recipes.base import Recipe, check_text_file, content_hash
from dtmerge.recipes.calibrate import (
    AUTO, PenaltyParams, calibrate, check_auto, describe_calibration, resolved_coef,
)
from dtmerge.rundir import RunDir
from dtmerge.train.job import TrainJob


class EwcParams(PenaltyParams):
    text: str | None = Field(None, description="Required: plain-text file the Fisher is estimated on")
    docs: int = Field(64, ge=1, description="Documents of `text` used for the Fisher")
    normalize: bool = Field(True, description="Fisher divided by its mean (coef ~ L2's)")


class Ewc(Recipe):
    name = "ewc"
    Params = EwcParams

    def check(self) -> None:
        check_text_file(self.label, self.params.text)
        check_auto(self)

    def penalty(self) -> dict:
        p = self.params
        return {"kind": "ewc", "fisher_text": str(p.text), "fisher_docs": p.docs,
                "normalize": p.normalize, "text_hash": content_hash(Path(p.text).expanduser())}

    def prepare(self, run: RunDir, log=print) -> None:
        if self.params.coef == AUTO:
            calibrate(self, run, self.penalty(), log)

    def jobs(self, run: RunDir) -> list[TrainJob]:
        spec = {"penalty": {**self.penalty(), "coef": resolved_coef(self, run)}}
        return [TrainJob(self.label, run.all_data, run.model(self.label), spec=spec)]

    def describe(self, run: RunDir) -> dict:
        return describe_calibration(self, run, super().describe(run))

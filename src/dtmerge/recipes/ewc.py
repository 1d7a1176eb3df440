"""`ewc`: SFT plus (coef / 2) * sum_i F_i (W - W0)_i^2, F the base model's diagonal Fisher on
general text (Kirkpatrick et al., 2017; see train/penalties.py).

`text` is a plain-text file (one document per line, or a `text` column) the base model should
keep knowing; `dtm demo` passes the testbed's pre-training text. It must not be text the
report scores (that would tune the recipe on its test items).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from dtmerge.recipes.base import Recipe, RecipeParams, check_text_file, content_hash
from dtmerge.rundir import RunDir
from dtmerge.train.job import TrainJob


class EwcParams(RecipeParams):
    text: str | None = Field(None, description="Required: plain-text file the Fisher is estimated on")
    coef: float = Field(0.1, gt=0, description="lambda")
    docs: int = Field(64, ge=1, description="Documents of `text` used for the Fisher")
    normalize: bool = Field(True, description="Fisher divided by its mean (coef ~ L2's)")


class Ewc(Recipe):
    name = "ewc"
    Params = EwcParams

    def check(self) -> None:
        check_text_file(self.label, self.params.text)

    def jobs(self, run: RunDir) -> list[TrainJob]:
        p = self.params
        spec = {"penalty": {"kind": "ewc", "coef": p.coef, "fisher_text": str(p.text),
                            "fisher_docs": p.docs, "normalize": p.normalize,
                            "text_hash": content_hash(Path(p.text).expanduser())}}
        return [TrainJob(self.label, run.all_data, run.model(self.label), spec=spec)]

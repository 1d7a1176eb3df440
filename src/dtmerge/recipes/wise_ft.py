"""`wise_ft`: base + t * (sft - base), one point of the interpolation line shipped as a model.

WiSE-FT (Wortsman et al., 2022) with its documented default t = 0.5. Choosing t by score is
only honest on validation items, not on the items the report scores.
"""

from __future__ import annotations

from pydantic import Field

from dtmerge.merge.stage import interpolate
from dtmerge.recipes.base import Recipe, RecipeParams, content_hash
from dtmerge.rundir import RunDir, hash_model
from dtmerge.train.job import TrainJob


class WiseFtParams(RecipeParams):
    t: float = Field(0.5, ge=0.0, le=1.0, description="Weight of the SFT model")


class WiseFt(Recipe):
    name = "wise_ft"
    Params = WiseFtParams

    def jobs(self, run: RunDir) -> list[TrainJob]:
        return [self.sft_job(run)]

    def build(self, run: RunDir, log=print) -> None:
        base, sft = self.base_model(), run.model("sft")
        out = run.model(self.label)

        def work():
            interpolate(base, sft, self.params.t, out)
            return {"outputs": [str(out)]}

        self.step(run, "build", {"base": hash_model(base), "sft": content_hash(sft)}, work, log,
                  outputs=[out])

"""`lora_moe`: LoRA experts with a learned softmax router on every MLP linear layer of the
frozen base, trained on all the data (the paper's LoRAMoE baseline, models/lora_moe.py).
LoRAMoE's localized balancing constraint is not implemented: the router is trained by the SFT
loss alone. It cannot be merged into plain weights; dtmerge's loader rebuilds it for scoring."""

from __future__ import annotations

from pydantic import Field

from dtmerge.recipes.base import Recipe, RecipeParams
from dtmerge.rundir import RunDir
from dtmerge.train.job import TrainJob


class LoraMoeParams(RecipeParams):
    experts: int = Field(4, ge=1)
    r: int | None = Field(None, ge=1, description="Rank per expert (default: train.lora.r)")
    alpha: float | None = Field(None, gt=0, description="Default: train.lora.alpha")


class LoraMoe(Recipe):
    name = "lora_moe"
    Params = LoraMoeParams

    def jobs(self, run: RunDir) -> list[TrainJob]:
        p, lora = self.params, self.cfg.train.lora
        moe = {"experts": p.experts, "r": p.r or lora.r, "alpha": p.alpha or lora.alpha}
        spec = {"lora_moe": moe, "base_model": self.base_model()}
        return [TrainJob(self.label, run.all_data, run.model(self.label), spec=spec)]

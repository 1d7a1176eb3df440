"""`sft`: plain supervised fine-tuning on all the data (the run's reference)."""

from __future__ import annotations

from dtmerge.errors import ConfigError
from dtmerge.recipes.base import Recipe
from dtmerge.rundir import RunDir
from dtmerge.train.job import TrainJob


class Sft(Recipe):
    name = "sft"

    def check(self) -> None:
        if self.label != "sft":
            raise ConfigError("recipes: sft is the run's reference model and keeps the label "
                              f"'sft' (got '{self.label}'); drop its label")

    def jobs(self, run: RunDir) -> list[TrainJob]:
        return [self.sft_job(run)]

"""The interface every recipe implements (`resolve.py` turns `recipes:` entries into recipes).

A recipe (1) prepares the data its jobs need (`prepare`, in the prepare stage), (2) lists its
training jobs, which the train stage runs on its executors with fingerprints and resume
(`jobs`), and (3) produces one model directory `models/<label>` that the evaluate stage scores
(`build`, in the build stage). Steps are manifest jobs, so finished work is skipped, work
whose inputs changed is redone and work whose outputs are gone is made again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

from pydantic import BaseModel, ConfigDict

from dtmerge.errors import ConfigError
from dtmerge.rundir import RunDir, hash_obj, hash_path, run_job
from dtmerge.train.job import TrainJob

if TYPE_CHECKING:
    from dtmerge.config import RecipeEntry, RunConfig


class RecipeParams(BaseModel):
    """A recipe's parameters: typed, frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Recipe:
    """Base class: a recipe that trains nothing and builds nothing (override what applies)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[RecipeParams]] = RecipeParams
    inference_cost: ClassVar[int] = 1  # forward passes per token, relative to one model

    def __init__(self, cfg: "RunConfig", label: str, params: RecipeParams):
        self.cfg, self.label, self.params = cfg, label, params

    def check(self) -> None:
        """Cross-checks against the run config (ConfigError); called before any stage."""

    # -- the three steps
    def prepare(self, run: RunDir, log=print) -> None:
        """Write the data files the jobs train on (before training)."""

    def jobs(self, run: RunDir) -> list[TrainJob]:
        """The training jobs (the same job may be listed by several recipes: run once)."""
        return []

    def build(self, run: RunDir, log=print) -> None:
        """Make `run.model(self.label)` from the trained jobs (after training)."""

    # -- helpers
    def sft_job(self, run: RunDir) -> TrainJob:
        """Plain SFT on all the data: shared by sft and wise_ft (trained once)."""
        return TrainJob("sft", run.all_data, run.model("sft"))

    def step(self, run: RunDir, name: str, inputs: dict[str, Any], work, log=print,
             outputs: Iterable[Path] = ()) -> bool:
        """Run `work()` as manifest job `job_name(name)`, fingerprinted on params + inputs.

        `inputs` must hold everything `work` reads besides the recipe's params (a setting of
        the run config, a file's hash); a step whose `outputs` are gone is redone.
        """
        fp = hash_obj({"params": self.params.model_dump(mode="json"), "inputs": inputs})
        return run_job(run, self.job_name(name), fp, work, outputs=outputs, log=log)

    def job_name(self, step: str) -> str:
        """The manifest job of one of this recipe's steps."""
        return f"{step}:{self.label}"

    def base_model(self) -> str:
        from dtmerge.models import resolve_model_path

        return resolve_model_path(self.cfg.model)

    def describe(self, run: RunDir) -> dict[str, Any]:
        """What the report shows about this recipe (training jobs, inference cost)."""
        return {"recipe": self.name, "params": self.params.model_dump(mode="json", exclude_none=True),
                "train_jobs": sorted({j.name for j in self.jobs(run)}),
                "inference_cost": self.inference_cost}


def missing_text_message(label: str) -> str:
    return (f"recipes: {label} needs `text:`, a plain-text file of general text the base model "
            "should keep (one document per line, or a `text` column), never text the report "
            "scores. `python -m dtmerge.demo.realdata` writes one: runs/realdata/general.txt "
            "(prose from files the held-out task does not use); `dtm demo` passes the testbed's "
            "pre-training text")


def check_text_file(label: str, text: str | None) -> None:
    """The general-text file a recipe (replay, ewc) needs: given, and there."""
    if text is None:
        raise ConfigError(missing_text_message(label))
    if not Path(text).expanduser().exists():
        raise ConfigError(f"recipes: {label}: text file {text} not found")


def content_hash(path: Path) -> str | None:
    return hash_path(path) if Path(path).exists() else None


def default_entries(cfg: "RunConfig") -> list["RecipeEntry"]:
    """Today's run without `recipes:`: DTM, and plain SFT when train.sft_baseline."""
    from dtmerge.config import RecipeEntry

    entries = [RecipeEntry(name="dtm")]
    if cfg.train.sft_baseline:
        entries.append(RecipeEntry(name="sft"))
    return entries

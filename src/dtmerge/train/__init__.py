"""Train stage: one function trains one model on one portion (`train_model`);
`train_stage` runs the K sub-models and the SFT baseline of a run."""

from dtmerge.train.stage import plan_jobs, train_stage
from dtmerge.train.trainer import train_model

__all__ = ["plan_jobs", "train_model", "train_stage"]

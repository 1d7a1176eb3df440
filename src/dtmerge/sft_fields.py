"""`train` settings given under TRL's own `SFTConfig` names: aliases and the pass-through check.

Kept beside config.py (same layer): TrainConfig calls these from its validators.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic_core import PydanticCustomError

# TRL's names for settings dtmerge names itself: either spelling works, one per config.
SFT_ALIASES = {"num_train_epochs": "num_epochs", "per_device_train_batch_size": "batch_size",
               "gradient_accumulation_steps": "grad_accum", "lr_scheduler_type": "lr_scheduler"}
# SFTConfig fields dtmerge sets per job or from another section. (`report_to` is not one: the
# trackers it names join those of tracking.mlflow / wandb / tensorboard, see train/trainer.py.)
SFT_OWNED = {"output_dir": "set per job inside the run directory",
             "run_name": "set per job (sub_<k>, sft)",
             "gradient_checkpointing": "use model.gradient_checkpointing",
             "bf16": "use model.dtype", "fp16": "use model.dtype"}


def _sft_field_names() -> list[str]:
    import dataclasses

    from trl import SFTConfig  # imported only when a config names a key dtmerge does not know

    return sorted(f.name for f in dataclasses.fields(SFTConfig) if f.init)


def sft_aliases_to_ours(data: Any) -> Any:
    """Rename TRL's names of dtmerge's own settings; both spellings at once is an error."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for trl_name, ours in SFT_ALIASES.items():
        if trl_name in data:
            if ours in data:
                raise PydanticCustomError("sft_passthrough", "train.{trl} is TRL's name for "
                                          "train.{ours}: give one of them",
                                          {"trl": trl_name, "ours": ours})
            data[ours] = data.pop(trl_name)
    return data


def check_sft_passthrough(extra: list[str], ours: list[str]) -> None:
    """Every key `train` does not declare must be an SFTConfig field dtmerge does not set."""
    if not extra:
        return  # TRL is imported only when there is something to check
    for key in extra:
        if key in SFT_OWNED:
            raise PydanticCustomError("sft_passthrough", "train.{key}: {why}",
                                      {"key": key, "why": SFT_OWNED[key]})
    known = _sft_field_names()
    for key in extra:
        if key not in known:
            close = difflib.get_close_matches(key, known + ours, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise PydanticCustomError(
                "sft_passthrough", "unknown key 'train.{key}': neither a dtmerge train "
                "setting nor a field of TRL's SFTConfig.{hint} Allowed here: {ours}, or any "
                "SFTConfig field", {"key": key, "hint": hint, "ours": ", ".join(ours)})

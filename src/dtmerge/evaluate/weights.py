"""Loading a trained variant in-process: a full model directory or base + LoRA adapter."""

from __future__ import annotations

from pathlib import Path


def load_variant(cfg, path: str | Path):
    """Load `path` as a causal LM; a LoRA adapter dir is applied to the configured base model.

    The adapter is merged into the in-memory weights (scoring only; nothing is written).
    """
    from dtmerge.models import load_model

    path = Path(path)
    if (path / "adapter_config.json").is_file():
        from peft import PeftModel

        base = load_model(cfg.model)
        return PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    return load_model(cfg.model, str(path))

"""The file that marks a model directory only dtmerge can load (an ensemble, a LoRA-MoE):
`dtmerge_model.json`, {"kind": ..., ...}. Read without torch, so a driver can plan around it."""

from __future__ import annotations

from pathlib import Path

from dtmerge.rundir import read_state_json, rebuild_hint

MARKER_FILE = "dtmerge_model.json"


def model_spec(path: str | Path | None) -> dict | None:
    """The marker's content for dtmerge's own model directories, else None."""
    marker = Path(path) / MARKER_FILE if path is not None else None
    if marker is None or not marker.is_file():
        return None
    return read_state_json(marker, rebuild_hint(marker.parent))


def model_kind(path: str | Path | None) -> str | None:
    """"ensemble", "lora_moe"... for dtmerge's own model directories, else None."""
    spec = model_spec(path)
    return spec.get("kind") if spec else None

"""Which CUDA device a job sees, judged without importing torch (which must not start CUDA
before a job's device is pinned)."""

from __future__ import annotations

import os
from pathlib import Path

def nvidia_visible() -> bool:
    """A CUDA device is likely visible, judged without importing torch."""
    return (Path("/dev/nvidiactl").exists()
            and os.environ.get("CUDA_VISIBLE_DEVICES", "0") not in ("", "-1"))


def gpu_driver_present() -> bool:
    """An NVIDIA driver is loaded here (judged without torch, which must not start CUDA yet)."""
    return Path("/dev/nvidiactl").exists()


def pin_job_device(device: str | None) -> str | None:
    """Make the calling job process see exactly one CUDA device, before torch starts CUDA:
    `device` when the stage gave one (train.devices), else the first device visible (Ray's
    reservation, or device 0). A job never sees several, so transformers never wraps it in
    DataParallel with an effective batch larger than the config says. Returns the device
    pinned, or None on a machine without one (or with CUDA hidden: "", "-1")."""
    if device is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None and not gpu_driver_present():
            return None
        device = (visible if visible is not None else "0").split(",")[0].strip()
        if device in ("", "-1"):
            return None
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    return device

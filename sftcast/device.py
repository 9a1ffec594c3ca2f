"""Where GPU work runs: `SFTCAST_DEVICE` = auto (default) | cpu | cuda | cuda:N.

The stack files set it per step class (the `gpu` stack pins GPU steps to `cuda`), so a step
meant for a GPU fails at once, with a reason, on a machine that has none.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager

import torch

ENV = "SFTCAST_DEVICE"


class DeviceError(RuntimeError):
    """The requested device does not exist here."""


def resolve_device(requested: str | None = None) -> torch.device:
    requested = (requested or os.environ.get(ENV) or "auto").strip().lower()
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as err:
        raise DeviceError(f"{ENV}={requested!r} is not a device; use auto, cpu or cuda") from err
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"{ENV}={requested!r}: sftcast runs on cpu or cuda only")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"{ENV}={requested!r} but no CUDA device is visible to torch {torch.__version__} "
            "(is this the GPU machine, and is a CUDA build of torch installed?)"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DeviceError(f"{ENV}={requested!r}: only {torch.cuda.device_count()} GPU(s)")
    return device


def autocast(device: torch.device) -> AbstractContextManager[object]:
    """bf16 autocast where the device supports it (recent NVIDIA GPUs); fp32 elsewhere."""
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

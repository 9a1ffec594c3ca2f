"""Where GPU work runs: `SFTCAST_DEVICE` = auto (default) | cpu | cuda | cuda:N.

The stack files set it per step class (the `gpu` stack pins GPU steps to `cuda`), so a step
meant for a GPU fails at once, with a reason, on a machine that has none.
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a device is resolved: the pre-flight checks
    import torch  # a device's name without it (`device_problem`)

ENV = "SFTCAST_DEVICE"
ALLOWED = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class DeviceError(RuntimeError):
    """The requested device does not exist here."""


def device_problem(value: str | None) -> str | None:
    """Why `value` (of SFTCAST_DEVICE, set or not) names no device sftcast runs on; None if it
    does. Only the name: whether a GPU is there is known where the step runs, not before."""
    requested = (value or "auto").strip().lower()
    if _DEVICE.fullmatch(requested):
        return None
    return f"{ENV}={requested!r} is not a device sftcast runs on; expected {ALLOWED}"


def resolve_device(requested: str | None = None) -> torch.device:
    import torch

    requested = (requested or os.environ.get(ENV) or "auto").strip().lower()
    if problem := device_problem(requested):
        raise DeviceError(problem)
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
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
    import torch

    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

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


COMPILE_ENV = "SFTCAST_COMPILE"
COMPILE_CHOICES = ("auto", "on", "off")


def compile_enabled(device: torch.device, requested: str | None = None) -> bool:
    """Whether training loops compile their decoder: `SFTCAST_COMPILE` = auto (default: on a
    GPU only) | on | off.

    `auto` leaves the CPU eager: inductor's first compile of a decoder costs about twice as
    long as a study candidate's whole measurement, compiled kernels on two threads were not
    bit-identical from one process to the next (which the same-answer-every-time promise
    cannot afford), and in the study's single-thread workers, where they were, they bought
    nothing measurable (docs/experiments.md). `on` compiles on the CPU too.
    """
    requested = (requested or os.environ.get(COMPILE_ENV) or "auto").strip().lower()
    if requested not in COMPILE_CHOICES:
        raise ValueError(f"{COMPILE_ENV}={requested!r}; expected one of {COMPILE_CHOICES}")
    return requested == "on" or (requested == "auto" and device.type == "cuda")


def compile_decoder(model: torch.nn.Module, device: torch.device) -> None:
    """Compile the model's decoder in place (its state dict keeps its keys) when
    `compile_enabled`; shapes are dynamic, so length-bucketed batches share one graph."""
    if compile_enabled(device):
        model.get_decoder().compile(dynamic=True)


def compilations() -> int:
    """Graphs compiled in this process so far (the benchmark reports it)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])

"""What `DEVICE` and `DTYPE` mean on this machine: the one place `auto` becomes a real device.

`mmpp bot` (through `mmpp.inference.queue.devices`), `mmpp worker`, `mmpp generate` and `bench/` all come
here, so `auto` cannot mean one thing in one command and crash in another. `auto` is the first CUDA
GPU, else Apple's MPS, else the CPU; a named device this machine lacks stops the start with one line
naming the setting and the devices that exist, before any model loads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from mmpp.errors import UserFacingError
from mmpp.logs import log_event

log = logging.getLogger(__name__)


class DeviceUnavailable(UserFacingError):
    code = "device_unavailable"


def _mps() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def present_devices() -> list[str]:
    """Every device an engine could use here, GPUs first, in the spelling DEVICE accepts."""
    gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return [*gpus, *(["mps"] if _mps() else []), "cpu"]


def resolve_device(name: str, setting: str = "DEVICE") -> torch.device:
    """`auto`, `cpu`, `mps`, `cuda` (the first GPU) or `cuda:N` as a device that exists here.

    `setting` is how the value was spelled by the operator (`DEVICE`, `DEVICES`, `--device`), so the
    one-line refusal names what to fix.
    """
    spec = name.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        return torch.device("mps") if _mps() else torch.device("cpu")
    here = ", ".join(present_devices())
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise DeviceUnavailable(f"{setting}={name} is not a device name; this machine has {here} (or auto).")\
            from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        index = device.index or 0
        if torch.cuda.is_available() and index < torch.cuda.device_count():
            return torch.device("cuda", index)
    elif device.type == "mps" and _mps():
        return torch.device("mps")
    raise DeviceUnavailable(f"{setting}={name}, but this machine has no such device; it has {here} (or auto).")


def resolve_dtype(name: str, device: torch.device) -> tuple[torch.dtype, str]:
    """The dtype for `DTYPE=name` on `device`, and why (said in the start-up line)."""
    if name != "auto":
        return getattr(torch, name), f"DTYPE={name}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "DTYPE=auto: bf16 on a GPU that has it"
        return torch.float16, "DTYPE=auto: fp16, this GPU has no bf16"
    if device.type == "mps":
        return torch.float16, "DTYPE=auto: fp16 on MPS"
    # Half precision on a CPU is slower than fp32 and some kernels lack it entirely.
    return torch.float32, "DTYPE=auto: fp32, half precision is slow on a CPU"


@dataclass(frozen=True)
class Placement:
    """Where and in what precision one engine draws, and the reasons, as the start-up line gives them."""

    device: torch.device
    dtype: torch.dtype
    why: str

    def log(self) -> None:
        log_event(log, logging.INFO, "device chosen", device=str(self.device),
                  dtype=str(self.dtype).removeprefix("torch."), why=self.why)


def _device_reason(name: str, device: torch.device, setting: str) -> str:
    if name.strip().lower() != "auto":
        return f"{setting}={name}"
    if device.type == "cuda":
        return f"{setting}=auto: the first of {torch.cuda.device_count()} CUDA GPU(s)"
    if device.type == "mps":
        return f"{setting}=auto: no CUDA GPU, Apple's MPS answers"
    return f"{setting}=auto: no CUDA GPU or MPS answers"


def place(device: str, dtype: str = "auto", setting: str = "DEVICE") -> Placement:
    """`DEVICE` and `DTYPE` resolved together; raises `DeviceUnavailable` for a device not here."""
    resolved = resolve_device(device, setting)
    torch_dtype, dtype_reason = resolve_dtype(dtype, resolved)
    return Placement(resolved, torch_dtype, f"{_device_reason(device, resolved, setting)}; {dtype_reason}")

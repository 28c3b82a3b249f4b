"""Which devices get an engine: `DEVICES=cuda:0,cuda:1`, `auto` (every visible GPU), or none (`DEVICE`).

One engine per device, all behind the one fair queue. Several engines on the CPU (tests, a GPU-less
box) share the cores: torch's intra-op thread count is process-wide, so it is split once here rather
than per engine thread.
"""

from __future__ import annotations

import logging
import os

import torch

from inference.engine import Engine
from mmpp.errors import UserFacingError
from mmpp.logs import log_event
from mmpp.settings import Settings

log = logging.getLogger(__name__)


class DevicesInvalid(UserFacingError):
    code = "devices_invalid"


def resolve_devices(settings: Settings) -> list[str]:
    """The device names to load an engine on, in order."""
    spec = (settings.devices or "").strip()
    if not spec:
        return [settings.device]
    if spec == "auto":
        count = torch.cuda.device_count()
        if count:
            return [f"cuda:{i}" for i in range(count)]
        return [settings.device if settings.device != "cuda" else "cpu"]
    names = [part.strip() for part in spec.split(",") if part.strip()]
    for name in names:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise DevicesInvalid(f"DEVICES lists {name!r}, which is not a device (try cuda:0,cuda:1 or auto).")\
                from None
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise DevicesInvalid(
                f"DEVICES lists {name}, but this machine has {torch.cuda.device_count()} visible GPU(s)."
            )
    return names


def load_engines(settings: Settings) -> list[Engine]:
    """One engine per device of `resolve_devices`; the first failure stops the start."""
    devices = resolve_devices(settings)
    cpu_engines = sum(torch.device(d).type == "cpu" for d in devices)
    if cpu_engines > 1:
        threads = max(1, (os.cpu_count() or 1) // cpu_engines)
        torch.set_num_threads(threads)
        log_event(log, logging.INFO, "cpu engines share the cores", engines=cpu_engines, threads_each=threads)
    return [Engine.from_settings(settings.model_copy(update={"device": d, "devices": None})) for d in devices]

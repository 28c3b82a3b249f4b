"""Which devices get an engine: `DEVICES=cuda:0,cuda:1`, `auto` (every visible GPU), or none (`DEVICE`).
What each name means on this machine is `mmpp.inference.device`'s to say.

One engine per device, all behind the one fair queue. Several engines on the CPU (tests, a GPU-less
box) share the cores: torch's intra-op thread count is process-wide, so it is split once here rather
than per engine thread.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from mmpp.errors import UserFacingError
from mmpp.logs import log_event
from mmpp.settings import Settings

if TYPE_CHECKING:
    from mmpp.inference.engine import Engine

# torch and the engine are imported inside the functions: both run only in a process that draws, and
# the queue's setup (which a bot that draws nothing runs too) imports this module.

log = logging.getLogger(__name__)


class DevicesInvalid(UserFacingError):
    code = "devices_invalid"


def resolve_devices(settings: Settings) -> list[str]:
    """The device names to load an engine on, in order, each one checked to exist here.

    Without DEVICES it is DEVICE alone, kept as spelled (`auto`) so the engine's start-up line can say
    why it landed where it did; `DEVICES=auto` is every visible GPU, or DEVICE where there is none.
    """
    import torch

    from mmpp.inference.device import DeviceUnavailable, resolve_device

    spec = (settings.devices or "").strip()
    if spec == "auto" and torch.cuda.is_available() and torch.cuda.device_count():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if not spec or spec == "auto":
        resolve_device(settings.device)
        return [settings.device]
    names = [part.strip() for part in spec.split(",") if part.strip()]
    for name in names:
        try:
            resolve_device(name, "DEVICES")
        except DeviceUnavailable as exc:
            raise DevicesInvalid(exc.message) from None
    return names


def load_engines(settings: Settings) -> list[Engine]:
    """One engine per device of `resolve_devices`; the first failure stops the start."""
    import torch

    from mmpp.inference.device import resolve_device
    from mmpp.inference.engine import Engine

    devices = resolve_devices(settings)
    cpu_engines = sum(resolve_device(d).type == "cpu" for d in devices)
    if cpu_engines > 1:
        threads = max(1, (os.cpu_count() or 1) // cpu_engines)
        torch.set_num_threads(threads)
        log_event(log, logging.INFO, "cpu engines share the cores", engines=cpu_engines, threads_each=threads)
    return [Engine.from_settings(settings.model_copy(update={"device": d, "devices": None})) for d in devices]

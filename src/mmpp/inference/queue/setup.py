"""Building the queue the settings ask for: local engines (one per device), remote workers through
Redis, or both. The queue is the bot's one front (`QueueFront`): where the bot draws nothing
itself, its faces are prepared and its styles read by `EngineFront`, which loads no weights."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from mmpp.inference.queue.devices import load_engines
from mmpp.inference.queue.gpu_queue import GenerationQueue
from mmpp.settings import Settings

if TYPE_CHECKING:
    from mmpp.inference.engine import Engine
    from mmpp.inference.queue.front import FacePreparer
    from mmpp.inference.queue.worker import EngineLike

    class DrawingEngine(EngineLike, FacePreparer, Protocol):
        """What stands in for a loaded engine: it draws, and it prepares faces as the engine did."""


# Around each engine loaded here, before the queue sees it: tests and benchmarks put a recorder there
# (`mmpp.inference.testing.recording`).
EngineWrapper = Callable[["Engine"], "DrawingEngine"]


async def open_queue(settings: Settings, *, wrap_engine: EngineWrapper | None = None) -> GenerationQueue:
    """With `QUEUE_BACKEND=redis` the bot loads engines only if DEVICES says so."""

    def load() -> list[EngineLike]:
        engines = load_engines(settings)
        return [wrap_engine(e) for e in engines] if wrap_engine is not None else list(engines)

    if settings.queue_backend == "local":
        return GenerationQueue(await asyncio.to_thread(load), settings)

    from mmpp.inference.queue.remote.dispatch import RemoteBackend
    from mmpp.inference.queue.remote.front import EngineFront
    from mmpp.inference.queue.remote.protocol import catalog_fingerprint
    from mmpp.inference.queue.remote.sealing import Seal

    # Before any model loads: without the secret, anyone who reaches Redis could pose as a worker.
    seal = Seal.from_settings(settings, "QUEUE_BACKEND=redis")

    front = await asyncio.to_thread(EngineFront.from_settings, settings)
    engines = await asyncio.to_thread(load) if settings.devices else []
    # Faces are prepared where they were before: on the first local engine, else by the front.
    queue = GenerationQueue(engines or None, settings, catalog=front.catalog, preparer=None if engines else front)
    backend = RemoteBackend(
        queue, settings.redis_url.get_secret_value(), catalog_fingerprint(front.catalog, front.resolution), seal,
        batch_timeout_s=settings.batch_timeout_s,
    )
    await backend.start()
    queue.on_shutdown(backend.close)
    return queue

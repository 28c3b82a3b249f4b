"""Decoding pictures and locating faces in worker processes, a bounded number at once.

Both are CPU work that the event loop must never wait on: Discord wants every interaction
acknowledged within 3 s. A thread is not enough: the face finder (dlib) holds the GIL while it
runs, so six face searches in threads stalled the event loop for 8 s on this project's machines.
Worker processes have their own GIL. Their number is `MAX_CONCURRENT_DECODES`, which also bounds
the memory decodes take (a 40-megapixel JPEG is ~0.4 GB while it is decoded), bot-wide.

Only the compact face crop comes back from a worker, never the upload; nothing touches the disk.
This module imports only what a worker needs (no torch), so workers start in about a second.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from mmpp.inference.preprocess import ImageLimits, LocatedFace, damaged, locate_face_crop
from mmpp.logs import log_event

log = logging.getLogger(__name__)

PARENT_POLL_S = 1.0


def _ready() -> bool:
    """Run once per worker at start, so the first member does not wait for its imports."""
    return True


def _exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the bot process is gone.

    A bot killed with -9 (or by the OOM killer) never shuts its pool down, and a worker does not
    notice on its own: it holds both ends of its task queue's pipe, so it waits forever, ~90 MB
    each, for work that will never come. Every restart after a kill would add `workers` more.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class Decoder:
    def __init__(self, limits: ImageLimits, workers: int) -> None:
        self.limits = limits
        self.workers = workers
        self._slots = asyncio.Semaphore(workers)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = self._new_pool(self.workers)
        return self._pool

    @staticmethod
    def _new_pool(workers: int) -> ProcessPoolExecutor:
        # spawn, not fork: the bot process runs threads (torch, discord.py) that fork would copy mid-flight.
        return ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent, initargs=(os.getpid(),),
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._executor(), _ready) for _ in range(self.workers)))

    async def locate(self, data: bytes) -> LocatedFace:
        """Decode `data` and locate its one face (raises the `ImageRejected` a member can act on).

        A worker that dies (the OOM killer, a decoder crashing on a hostile file) breaks the whole
        pool, and every decode running in it with it, so a broken pool says nothing about whose file
        broke it: each of those decodes is tried once more alone, in a process of its own, and only
        a file that kills that one too is refused as damaged (and counted against its sender). A
        member whose upload merely shared a pool with a poison file gets their portrait."""
        async with self._slots:
            loop = asyncio.get_running_loop()
            pool = self._executor()
            try:
                return await loop.run_in_executor(pool, locate_face_crop, data, self.limits)
            except BrokenProcessPool:
                self._replace(pool)
                log_event(log, logging.WARNING, "decode worker died, pool rebuilt", upload_bytes=len(data))
            return await self._alone(data)

    async def _alone(self, data: bytes) -> LocatedFace:
        """`data` decoded in a new one-process pool that nothing else uses: if that dies, `data` did it.
        Held within the caller's slot, so decodes in memory at once stay bounded."""
        loop = asyncio.get_running_loop()
        pool = self._new_pool(1)
        try:
            return await loop.run_in_executor(pool, locate_face_crop, data, self.limits)
        except BrokenProcessPool:
            log_event(log, logging.WARNING, "upload killed a decode worker on its own, refused as damaged",
                      upload_bytes=len(data))
            raise damaged() from None
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Drop a broken pool once, however many decodes saw it break; the next call builds anew."""
        if self._pool is broken:
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

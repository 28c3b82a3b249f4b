"""A real engine on the tiny model with two styles, and a recording wrapper around it.

The wrapper never replaces the engine: it notes each call (who, which style, when), can hold calls
at a gate so a test can line jobs up without races, and can raise a fault instead of one call.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.engine import Engine, GenerationRequest, GenerationResult, StepProgress
from mmpp.inference.queue import GenerationQueue, JobEvent, JobHandle, Started
from mmpp.inference.styles import StyleCatalog
from mmpp.inference.testing.tiny_model import add_tiny_style, make_tiny_model
from mmpp.settings import Settings, load_settings

Fault = Callable[[int, Sequence[GenerationRequest]], BaseException | None]


class ProbeEngine:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls: list[list[tuple[str, int]]] = []  # per engine call: (style, seed) of each job
        self.entered_at: list[float] = []
        self.returned_at: list[float] = []
        self.steps: list[list[tuple[int, tuple[bool, ...]]]] = []  # per call: (step, active) as the engine saw it
        self.last_step = 0
        self.fault: Fault | None = None
        self._gate = threading.Event()
        self._gate.set()

    @property
    def catalog(self) -> StyleCatalog:
        return self.engine.catalog

    def hold(self) -> None:
        """Engine calls from now on wait (on the GPU thread) until `release`."""
        self._gate = threading.Event()

    def release(self) -> None:
        self._gate.set()

    def generate(
        self, requests: Sequence[GenerationRequest], on_step: Callable[[StepProgress], None] | None = None
    ) -> list[GenerationResult]:
        index = len(self.calls)
        self.calls.append([(r.style, r.seed) for r in requests])
        self.entered_at.append(time.perf_counter())
        seen: list[tuple[int, tuple[bool, ...]]] = []
        self.steps.append(seen)
        try:
            self._gate.wait(timeout=30)
            fault = self.fault(index, requests) if self.fault else None
            if fault is not None:
                raise fault

            def record(progress: StepProgress) -> None:
                seen.append((progress.step, progress.active))
                self.last_step = progress.step
                if on_step is not None:
                    on_step(progress)

            return self.engine.generate(requests, record)
        finally:
            self.returned_at.append(time.perf_counter())

    def seeds(self) -> list[list[int]]:
        return [[seed for _, seed in call] for call in self.calls]


@pytest.fixture(scope="session")
def queue_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = make_tiny_model(tmp_path_factory.mktemp("queue-model"))
    add_tiny_style(model_dir, "other-style", seed=7)
    return model_dir


@pytest.fixture(scope="session")
def queue_settings(queue_model_dir: Path) -> Settings:
    # No gather window by default: tests line jobs up with the gate instead of with timing.
    return load_settings(
        None, model_dir=queue_model_dir, device="cpu", dtype="float32", queue_batch_wait_s=0, preview_every=2
    )


@pytest.fixture(scope="session")
def real_engine(queue_settings: Settings) -> Engine:
    return Engine.from_settings(queue_settings)


@pytest.fixture(scope="session")
def face(real_engine: Engine, selfie_bytes: bytes) -> PreparedFace:
    return real_engine.prepare(selfie_bytes)


QueueFactory = Callable[..., tuple[GenerationQueue, ProbeEngine]]


@pytest.fixture
def make_queue(queue_settings: Settings, real_engine: Engine) -> Iterator[QueueFactory]:
    probes: list[ProbeEngine] = []

    def make(*, initial_job_s: float = 1.0, **overrides: object) -> tuple[GenerationQueue, ProbeEngine]:
        probe = ProbeEngine(real_engine)
        probes.append(probe)
        settings = queue_settings.model_copy(update=overrides)
        return GenerationQueue(probe, settings, initial_job_s=initial_job_s, stop_timeout_s=5), probe

    yield make
    for probe in probes:  # never leave a GPU thread parked on a gate after a failed test
        probe.release()


async def collect(handle: JobHandle, timeout: float = 20) -> list[JobEvent]:
    events: list[JobEvent] = []
    async with asyncio.timeout(timeout):
        async for event in handle.events():
            events.append(event)
    return events


async def started(handle: JobHandle, timeout: float = 10) -> None:
    """Wait until the worker has taken this job (its engine call may still be parked on the gate)."""
    async with asyncio.timeout(timeout):
        async for event in handle.events():
            if isinstance(event, Started):
                return
    raise AssertionError(f"{handle} finished without starting")

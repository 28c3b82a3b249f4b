"""A real engine on the tiny model with two styles, and the recording wrapper around it
(`mmpp.inference.testing.recording`: it notes each call, can hold calls at a gate so a test can line
jobs up without races, and can raise a fault instead of one call)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.engine import Engine
from mmpp.inference.queue import GenerationQueue, JobEvent, JobHandle, Started
from mmpp.inference.testing.recording import RecordingEngine, Swap
from mmpp.inference.testing.tiny_model import add_tiny_style, make_tiny_model
from mmpp.settings import Settings, load_settings


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


QueueFactory = Callable[..., tuple[GenerationQueue, RecordingEngine]]


@pytest.fixture
def make_queue(queue_settings: Settings, real_engine: Engine) -> Iterator[QueueFactory]:
    probes: list[RecordingEngine] = []

    def make(*, initial_job_s: float = 1.0, swap: Swap | None = None,
             **overrides: object) -> tuple[GenerationQueue, RecordingEngine]:
        probe = RecordingEngine(real_engine, swap=swap)
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

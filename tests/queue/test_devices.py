"""Several engines behind the one fair queue (two one-thread CPU engines stand in for two GPUs)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.device import DeviceUnavailable, place, present_devices, resolve_device
from mmpp.inference.engine import Engine
from mmpp.inference.queue import Done, GenerationQueue, Queued
from mmpp.inference.queue.devices import DevicesInvalid, load_engines, resolve_devices
from mmpp.inference.testing.recording import RecordingEngine
from mmpp.settings import Settings, load_settings
from mmpp.settings_errors import SettingsError
from tests.queue.conftest import collect, started
from tests.redis_server import QUEUE_SECRET


@pytest.fixture(scope="module")
def two_engines(queue_settings: Settings) -> Iterator[list[Engine]]:
    threads = torch.get_num_threads()
    engines = load_engines(queue_settings.model_copy(update={"devices": "cpu,cpu"}))
    yield engines
    torch.set_num_threads(threads)  # the thread count is process-wide; give the other tests theirs back


def two_probes(
    engines: list[Engine], settings: Settings, **overrides: object
) -> tuple[GenerationQueue, list[RecordingEngine]]:
    probes = [RecordingEngine(e) for e in engines]
    queue = GenerationQueue(probes, settings.model_copy(update=overrides), initial_job_s=10.0, stop_timeout_s=5)
    return queue, probes


def test_devices_setting_picks_engines(queue_settings: Settings) -> None:
    assert resolve_devices(queue_settings) == ["cpu"]
    assert resolve_devices(queue_settings.model_copy(update={"devices": "cpu, cpu"})) == ["cpu", "cpu"]
    auto = resolve_devices(queue_settings.model_copy(update={"devices": "auto"}))
    assert auto == ([f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"])
    for wrong in ("cuda:7", "gpu0"):
        with pytest.raises(DevicesInvalid, match=f"^DEVICES={wrong}.*this machine has .*cpu"):
            resolve_devices(queue_settings.model_copy(update={"devices": wrong}))


def test_auto_is_the_first_gpu_else_mps_else_the_cpu_for_every_entry_point(queue_settings: Settings) -> None:
    shipped = queue_settings.model_copy(update={"device": "auto", "dtype": "auto", "devices": None})
    placement = place(shipped.device, shipped.dtype)
    if torch.cuda.is_available():
        assert placement.device == torch.device("cuda", 0) and placement.dtype in (torch.bfloat16, torch.float16)
    elif torch.backends.mps.is_available():
        assert placement.device == torch.device("mps") and placement.dtype == torch.float16
    else:
        assert (placement.device, placement.dtype) == (torch.device("cpu"), torch.float32)
        assert placement.why == (
            "DEVICE=auto: no CUDA GPU or MPS answers; DTYPE=auto: fp32, half precision is slow on a CPU"
        )
    # The bot's engine list (DEVICES unset, or auto on a box without GPUs) is the same one device.
    assert [resolve_device(d) for d in resolve_devices(shipped)] == [placement.device]
    assert present_devices()[0] == str(placement.device) and present_devices()[-1] == "cpu"


def test_a_device_this_machine_lacks_is_one_line_naming_device_and_what_exists() -> None:
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, on any machine
    here = ", ".join(present_devices())
    with pytest.raises(DeviceUnavailable) as caught:
        place(missing)
    assert caught.value.message == f"DEVICE={missing}, but this machine has no such device; it has {here} (or auto)."
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable) as caught:
            place("cuda")
        assert caught.value.message.startswith("DEVICE=cuda, but this machine has no such device; it has ")


def test_device_accepts_cuda_n_and_refuses_other_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVICE", "cuda:1")
    assert load_settings(None).device == "cuda:1"
    monkeypatch.setenv("DEVICE", "GPU")
    with pytest.raises(SettingsError) as caught:
        load_settings(None)
    assert caught.value.message == (
        "Setting DEVICE (the environment) is 'GPU': expected auto, cpu, mps, cuda or cuda:N (like cuda:1)."
    )


async def test_two_engines_run_two_batches_at_once(
    two_engines: list[Engine], queue_settings: Settings, face: PreparedFace
) -> None:
    assert torch.get_num_threads() == max(1, (os.cpu_count() or 1) // 2)
    queue, probes = two_probes(two_engines, queue_settings, max_batch_size=1)
    async with queue:
        for probe in probes:
            probe.hold()
        handles = [queue.submit(face, "tiny-style", user_id=n, guild_id=n, seed=n) for n in range(4)]
        await asyncio.gather(started(handles[0]), started(handles[1]))
        # Both engines hold one job each while the other two wait their turn.
        assert [len(p.calls) for p in probes] == [1, 1]
        assert queue.running == 2 and queue.depth == 2 and queue.workers == 2
        for probe in probes:
            probe.release()
        results = [await collect(h) for h in handles]
    assert all(isinstance(events[-1], Done) for events in results)
    assert sum(len(p.calls) for p in probes) == 4
    assert all(p.calls for p in probes)  # the load was shared, not left on one engine


async def test_two_engines_keep_the_fair_order_between_servers(
    two_engines: list[Engine], queue_settings: Settings, face: PreparedFace
) -> None:
    queue, probes = two_probes(two_engines, queue_settings, max_batch_size=1)
    async with queue:
        for probe in probes:
            probe.hold()
        busy = [queue.submit(face, "tiny-style", user_id=n, guild_id=1, seed=n) for n in range(1, 5)]
        lone = queue.submit(face, "tiny-style", user_id=99, guild_id=2, seed=99)
        # The first two places go to one job of each server, not to two jobs of the busy one.
        await asyncio.gather(started(busy[0]), started(lone))
        assert sorted(seed for p in probes for call in p.seeds() for seed in call) == [1, 99]
        # Then the busy server's line, first come first served.
        assert [queue.position(n) for n in (2, 3, 4)] == [1, 2, 3]
        for probe in probes:
            probe.release()
        await asyncio.gather(*(h.outcome() for h in [*busy, lone]))
    assert sum(len(p.calls) for p in probes) == 5


async def test_estimates_share_the_line_among_the_engines(
    two_engines: list[Engine], queue_settings: Settings, face: PreparedFace
) -> None:
    queue, probes = two_probes(two_engines, queue_settings, max_batch_size=1)
    async with queue:
        for probe in probes:
            probe.hold()
        running = [queue.submit(face, "tiny-style", user_id=n, guild_id=n) for n in (1, 2)]
        await asyncio.gather(*(started(h) for h in running))
        waiting = [queue.submit(face, "tiny-style", user_id=n, guild_id=n) for n in (3, 4, 5)]
        last = await anext(waiting[2].events())
        for probe in probes:
            probe.release()
        await asyncio.gather(*(h.outcome() for h in [*running, *waiting]))
    assert isinstance(last, Queued) and last.position == 3
    # 10 s a job (the seed): both engines free up in ~10 s, then two jobs ahead shared by two engines.
    assert last.estimated_wait_s == pytest.approx(10 + 2 * 10 / 2, abs=1.0)


def test_a_worker_on_a_device_this_machine_lacks_says_so_in_one_line(tmp_path: Path) -> None:
    missing = f"cuda:{torch.cuda.device_count()}"
    done = subprocess.run(
        # Neither Redis nor a model is reached: the device is checked first.
        [sys.executable, "-m", "mmpp.cli", "worker", "--device", missing, "--redis-url", "redis://127.0.0.1:1/0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "QUEUE_SECRET": QUEUE_SECRET},
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"mmpp: DEVICE={missing}, but this machine has no such device; it has {', '.join(present_devices())} "
        "(or auto).\n"
    )

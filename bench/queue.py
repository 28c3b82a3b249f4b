"""GPU queue benchmark on the tiny model: batching on against off, the queue's own overhead, memory,
and sets of several takes against as many single requests.

    python bench/queue.py [--model-dir DIR] [--jobs 32] [--samples 100] [--rounds 3] [--device cpu|cuda]
                          [--sets-only]
    python bench/queue.py --quick     # few jobs, one round, on the CPU (what CI runs)

Without --model-dir it builds the tiny random-weight model in a temporary folder. Every number is
measured in this run; throughput configurations are interleaved over `--rounds` and the best round
of each is kept, so a noisy neighbour on the machine hurts them all alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/queue.py` puts this folder first on sys.path, where this file would shadow the standard
# library's `queue` (asyncio imports it): the folder leaves sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import gc
import io
import logging
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Sequence

from PIL import Image
from skimage import data as skdata

from mmpp.inference.conditioning import PreparedFace, prepare
from mmpp.inference.engine import Engine
from mmpp.inference.preprocess import locate_face
from mmpp.inference.queue import Done, GenerationQueue
from mmpp.inference.testing.recording import RecordingEngine
from mmpp.inference.testing.tiny_model import make_tiny_model
from mmpp.settings import Settings, load_settings


def ms(values: Sequence[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:.2f} ms / {p99 * 1000:.2f} ms"


async def throughput(engine: Engine, settings: Settings, face: PreparedFace, style: str, jobs: int,
                     max_batch: int) -> tuple[float, list[float]]:
    """Jobs per second for `jobs` same-style jobs submitted at once, and the GPU's idle gaps."""
    timed = RecordingEngine(engine)
    update = {"max_batch_size": max_batch, "queue_capacity": max(jobs, settings.queue_capacity)}
    async with GenerationQueue(timed, settings.model_copy(update=update)) as queue:
        began = time.perf_counter()
        handles = [queue.submit(face, style, user_id=n, guild_id=n % 4, seed=n) for n in range(jobs)]
        outcomes = await asyncio.gather(*(h.outcome() for h in handles))
        elapsed = time.perf_counter() - began
    if not all(isinstance(o, Done) for o in outcomes):
        raise RuntimeError(f"not every job finished: {outcomes}")
    gaps = [b - a for a, b in zip(timed.returned_at, timed.entered_at[1:], strict=False)]
    return jobs / elapsed, gaps


async def overhead(engine: Engine, settings: Settings, face: PreparedFace, style: str, samples: int,
                   gather_s: float) -> list[float]:
    """Submit to engine call, one job at a time on an idle GPU (1 step each: only the gap counts)."""
    timed = RecordingEngine(engine)
    latencies = []
    async with GenerationQueue(timed, settings.model_copy(update={"queue_batch_wait_s": gather_s})) as queue:
        for n in range(samples):
            began = time.perf_counter()
            handle = queue.submit(face, style, user_id=n, guild_id=1, steps=1)
            await handle.outcome()
            latencies.append(timed.entered_at[-1] - began)
    return latencies


async def deep_queue(engine: Engine, settings: Settings, face: PreparedFace, style: str,
                     n: int) -> tuple[list[float], float, int]:
    """Submit timings with up to `n` waiting, the first position pass over them, and bytes held."""
    update = {"queue_capacity": n}
    # Not started: nothing drains, so the n jobs stay queued.
    queue = GenerationQueue(engine, settings.model_copy(update=update))
    submits = []
    for i in range(n):
        began = time.perf_counter()
        queue.submit(face, style, user_id=i, guild_id=i % 50, seed=i)
        submits.append(time.perf_counter() - began)
    began = time.perf_counter()
    await asyncio.sleep(0)  # the debounced pass that hands every job its Queued(position, wait)
    first_pass = time.perf_counter() - began
    await queue.shutdown(grace_s=0)

    gc.collect()
    queue = GenerationQueue(engine, settings.model_copy(update=update))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    handles = [queue.submit(face, style, user_id=i, guild_id=i % 50, seed=i) for i in range(n)]
    await asyncio.sleep(0)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del handles
    await queue.shutdown(grace_s=0)
    return submits, first_pass, held


async def one_set(engine: Engine, settings: Settings, selfie: bytes, style: str, takes: int, *,
                  as_singles: bool) -> float:
    """Seconds from the selfie to every take drawn: one request for a set of `takes` (one face
    preparation, one queue place, one batch), or `takes` single requests one after another, each with
    its own face preparation and trip through the queue (what a member rerolling did before sets)."""
    update = {"max_batch_size": max(takes, settings.max_batch_size)}
    async with GenerationQueue(engine, settings.model_copy(update=update)) as queue:
        began = time.perf_counter()
        for n in range(takes if as_singles else 1):
            face = await asyncio.to_thread(engine.prepare, selfie)
            outcome = await queue.submit(face, style, user_id=1, guild_id=1, seed=n,
                                         count=1 if as_singles else takes).outcome()
            if not isinstance(outcome, Done) or len(outcome.results) != (1 if as_singles else takes):
                raise RuntimeError(f"the set did not finish: {outcome}")
        return time.perf_counter() - began


async def sets(engine: Engine, settings: Settings, selfie: bytes, rounds: int) -> list[tuple[str, str]]:
    """Seconds per set of 1, 2 and 4 against that many single requests, best of `rounds` (interleaved)."""
    style = engine.catalog.names()[0]
    await one_set(engine, settings, selfie, style, 2, as_singles=False)  # warm-up: first calls allocate
    best: dict[tuple[int, bool], float] = {}
    for _ in range(rounds):
        for takes in (1, 2, 4):
            for singles in (False, True):
                seconds = await one_set(engine, settings, selfie, style, takes, as_singles=singles)
                best[takes, singles] = min(seconds, best.get((takes, singles), seconds))
    rows = []
    for takes in (1, 2, 4):
        one, apart = best[takes, False], best[takes, True]
        rows.append((f"a set of {takes} (one request) / {takes} single request(s) one after another, s",
                     f"{one:.3f} s / {apart:.3f} s = **{apart / one:.2f}x** faster as a set"))
    return rows


def image_bytes(face: PreparedFace) -> int:
    # PIL pixel buffers live outside Python's allocator, so tracemalloc cannot see them: count them.
    return sum(im.width * im.height * len(im.getbands()) for im in (face.face, face.control))


async def run(engine: Engine, settings: Settings, selfie: bytes, args: argparse.Namespace) -> list[tuple[str, str]]:
    face = engine.prepare(selfie)
    style = engine.catalog.names()[0]
    batch_sizes = sorted({1, settings.max_batch_size, 8})
    await throughput(engine, settings, face, style, 8, 4)  # warm-up: first calls allocate
    best: dict[int, tuple[float, list[float]]] = {}
    for _ in range(args.rounds):
        for size in batch_sizes:
            result = await throughput(engine, settings, face, style, args.jobs, size)
            if size not in best or result[0] > best[size][0]:
                best[size] = result
    off = best[1][0]
    rows = [(f"throughput, batching off (max batch 1), {args.jobs} same-style jobs", f"{off:.2f} jobs/s")]
    for size in batch_sizes[1:]:
        rate = best[size][0]
        rows.append((f"throughput, batching on (max batch {size})", f"{rate:.2f} jobs/s = **{rate / off:.2f}x**"))
    top = max(batch_sizes)
    rows.append((f"GPU idle between engine calls under load (max batch {top}), median / p99", ms(best[top][1])))

    rows.append((f"queue overhead, submit -> engine call, idle GPU, no gather window, median / p99 "
                 f"(n={args.samples})", ms(await overhead(engine, settings, face, style, args.samples, 0.0))))
    gather = 0.05
    rows.append((f"same with a {gather * 1000:.0f} ms gather window (queue_batch_wait_s; waits by design)",
                 ms(await overhead(engine, settings, face, style, max(10, args.samples // 5), gather))))

    submits, first_pass, held = await deep_queue(engine, settings, face, style, args.deep)
    rows.append((f"submit() call while filling to {args.deep} waiting, median / p99", ms(submits)))
    rows.append((f"first position pass over {args.deep} waiting jobs", f"{first_pass * 1000:.2f} ms"))
    rows.append((f"memory held by {args.deep} queued jobs: queue bookkeeping (tracemalloc)",
                 f"{held / 1024:.0f} KiB ({held / args.deep:.0f} B/job)"))
    tiny = image_bytes(face)
    full = image_bytes(prepare(locate_face(selfie, engine.limits), 1024))
    rows.append((f"+ each job's face images at {face.face.width} px (this model) / 1024 px (SDXL)",
                 f"{tiny / 1024:.0f} KiB / {full / 2**20:.1f} MiB per job = "
                 f"{tiny * args.deep / 2**20:.1f} MiB / {full * args.deep / 2**30:.2f} GiB for {args.deep}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--deep", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sets-only", action="store_true", help="only the sets-of-takes rows")
    parser.add_argument("--quick", action="store_true", help="few jobs, one round, on the CPU")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.samples, args.deep, args.rounds, args.device = 16, 5, 50, 1, "cpu"  # 16: two batches of 8
    # The deep-queue row drops 1000 jobs on purpose; their "queue stopped" warnings are noise here.
    logging.getLogger("mmpp.inference.queue").setLevel(logging.ERROR)

    buffer = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(buffer, "JPEG", quality=92)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or make_tiny_model(Path(tmp) / "tiny")
        # The tiny model's own LoRA styles; the built-in prompt styles would sort first.
        settings = load_settings(None, model_dir=model_dir, device=args.device, builtin_styles=False)
        engine = Engine.from_settings(settings)
        rows = [] if args.sets_only else asyncio.run(run(engine, settings, buffer.getvalue(), args))
        rows += asyncio.run(sets(engine, settings, buffer.getvalue(), args.rounds))

    print(f"\nGPU queue on the tiny model ({engine.device}, {engine.resolution} px, "
          f"{engine.catalog.get(engine.catalog.names()[0]).definition.steps} steps)\n")
    print("| measure | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()

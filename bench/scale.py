"""Past one GPU, on the tiny model: jobs/s with one worker, two workers in one process, and two
`mmpp worker` processes through Redis; the latency a job gains on the Redis path over the in-process
one; the bytes per job that cross Redis.

    python bench/scale.py [--model-dir DIR] [--jobs 16] [--latency-jobs 20] [--steps 4]
    python bench/scale.py --quick     # 4 jobs, 3 for latency, 2 steps (what CI runs)

Every engine is limited to one CPU thread, so two of them stand in for two GPUs on two free cores.
A private `redis-server` (no persistence) is started for the run, so its traffic counters are ours.
Without --model-dir the tiny random-weight model is built in a temporary folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/scale.py` puts this folder first on sys.path, where bench/queue.py would shadow the standard
# library's `queue` (asyncio imports it): the folder leaves sys.path, and the repository root takes its
# place, for the worker launcher under tests/.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import io
import logging
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time

import redis
import torch
from cryptography.fernet import Fernet
from PIL import Image
from pydantic import SecretStr
from skimage import data as skdata

from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.engine import Engine
from mmpp.inference.queue import Done, GenerationQueue
from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.remote.dispatch import RemoteBackend
from mmpp.inference.queue.remote.sealing import Seal
from mmpp.inference.testing.tiny_model import make_tiny_model
from mmpp.settings import Settings, load_settings
from tests.redis_server import worker_process

# The Redis backend needs QUEUE_SECRET (the bot and its workers share it): payloads travel sealed.
QUEUE_SECRET = Fernet.generate_key().decode()

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return process, url


def net_bytes(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("stats")
        return int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"])
    finally:
        client.close()


async def run_jobs(queue: GenerationQueue, face: PreparedFace, jobs: int, steps: int) -> float:
    """All at once from `jobs` members on four servers; seconds until the last is done."""
    started = time.perf_counter()
    handles = [queue.submit(face, "tiny-style", user_id=n, guild_id=n % 4, seed=n, steps=steps) for n in range(jobs)]
    outcomes = await asyncio.gather(*(h.outcome() for h in handles))
    assert all(isinstance(o, Done) for o in outcomes), outcomes
    return time.perf_counter() - started


async def overheads(queue: GenerationQueue, face: PreparedFace, jobs: int, steps: int) -> list[float]:
    """One job at a time: submit-to-portrait time less the engine's own seconds, per job."""
    spent = []
    for n in range(jobs):
        started = time.perf_counter()
        outcome = await queue.submit(face, "tiny-style", user_id=n, guild_id=1, seed=n, steps=steps).outcome()
        assert isinstance(outcome, Done), outcome
        spent.append(time.perf_counter() - started - outcome.timings.engine_s)
    return spent


class Workers:
    """`mmpp worker` processes, one thread each, registered with the bot side's backend."""

    def __init__(self, url: str, model_dir: Path, names: list[str], workdir: Path) -> None:
        self.processes = [
            worker_process(model_dir, workdir, name, redis_url=url, LOG_LEVEL="WARNING", QUEUE_SECRET=QUEUE_SECRET)
            for name in names
        ]

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


async def remote_queue(settings: Settings, engine: Engine, url: str, count: int, model_dir: Path, workdir: Path,
                       ) -> tuple[GenerationQueue, RemoteBackend, Workers]:
    queue = GenerationQueue(None, settings, catalog=engine.catalog, initial_job_s=1.0)
    backend = RemoteBackend(queue, url, p.catalog_fingerprint(engine.catalog, engine.resolution), Seal(QUEUE_SECRET))
    await backend.start()
    queue.on_shutdown(backend.close)
    queue.start()
    workers = Workers(url, model_dir, [f"bench{n}" for n in range(count)], workdir)
    async with asyncio.timeout(300):
        while queue.workers < count:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    return queue, backend, workers


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace, model_dir: Path, workdir: Path) -> list[tuple[str, str]]:
    torch.set_num_threads(1)
    settings = load_settings(None, model_dir=model_dir, device="cpu", dtype="float32", max_batch_size=args.batch,
                             preview_every=2)
    engines = [Engine.from_settings(settings) for _ in range(2)]
    selfie = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(selfie, format="JPEG")
    face = engines[0].prepare(selfie.getvalue())
    rows: list[tuple[str, str]] = []

    async with GenerationQueue(engines[:1], settings, initial_job_s=1.0) as one:
        await run_jobs(one, face, 4, args.steps)  # warm-up
        one_s = await run_jobs(one, face, args.jobs, args.steps)
        local_over = await overheads(one, face, args.latency_jobs, args.steps)
    async with GenerationQueue(engines, settings, initial_job_s=1.0) as two:
        await run_jobs(two, face, 4, args.steps)
        two_s = await run_jobs(two, face, args.jobs, args.steps)

    server, url = start_redis()
    try:
        settings = settings.model_copy(update={"redis_url": SecretStr(url)})
        queue, backend, workers = await remote_queue(settings, engines[0], url, 2, model_dir, workdir)
        try:
            await run_jobs(queue, face, 4, args.steps)
            sent, received, wire = backend.bytes_sent, backend.bytes_received, net_bytes(url)
            remote_s = await run_jobs(queue, face, args.jobs, args.steps)
            per_job_payload = (backend.bytes_sent - sent + backend.bytes_received - received) / args.jobs
            per_job_wire = (net_bytes(url) - wire) / args.jobs
            workers.stop()  # one worker for the latency run, so both paths draw on one engine
        finally:
            await queue.shutdown(grace_s=5)
        queue, backend, workers = await remote_queue(settings, engines[0], url, 1, model_dir, workdir)
        try:
            await overheads(queue, face, 3, args.steps)  # warm-up
            remote_over = await overheads(queue, face, args.latency_jobs, args.steps)
        finally:
            workers.stop()
            await queue.shutdown(grace_s=5)
    finally:
        server.kill()
        server.wait()

    one_rate = args.jobs / one_s
    rows.append((f"jobs/s, one worker in process ({args.jobs} jobs, 4 servers)", f"{one_rate:.2f} (1.00x)"))
    rows.append(("jobs/s, two workers in one process", f"{args.jobs / two_s:.2f} ({one_s / two_s:.2f}x)"))
    rows.append(("jobs/s, two `mmpp worker` processes through Redis",
                 f"{args.jobs / remote_s:.2f} ({one_s / remote_s:.2f}x)"))
    med_l, p99_l = statistics.median(local_over), pct(local_over, 0.99)
    med_r, p99_r = statistics.median(remote_over), pct(remote_over, 0.99)
    rows.append((f"per-job time outside the engine, in process (median / p99, n={args.latency_jobs})",
                 f"{med_l * 1000:.1f} ms / {p99_l * 1000:.1f} ms"))
    rows.append(("per-job time outside the engine, through Redis (median / p99)",
                 f"{med_r * 1000:.1f} ms / {p99_r * 1000:.1f} ms"))
    rows.append(("added by the Redis path (median / p99)",
                 f"{(med_r - med_l) * 1000:.1f} ms / {(p99_r - p99_l) * 1000:.1f} ms"))
    rows.append(("bytes per job crossing Redis: payload, previews, portrait", f"{per_job_payload / 1024:.1f} KiB"))
    rows.append(("bytes per job on Redis's sockets (adds arq's polling, heartbeats)", f"{per_job_wire / 1024:.1f} KiB"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--latency-jobs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1, help="MAX_BATCH_SIZE (1: every job is its own engine call)")
    parser.add_argument("--quick", action="store_true", help="4 jobs, 3 for latency, 2 steps")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.latency_jobs, args.steps = 4, 3, 2
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or make_tiny_model(Path(tmp) / "tiny")
        rows = asyncio.run(run(args, model_dir, Path(tmp)))
    print(f"\nScale on the tiny model (CPU, one thread per engine, {args.steps} steps, batch {args.batch}, "
          f"{os.cpu_count()} cores)\n")
    print("| measure | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()

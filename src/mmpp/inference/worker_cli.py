"""`mmpp worker`: draw portraits for a bot through Redis, on one GPU.

It lives outside `mmpp.inference.queue` on purpose: importing anything under that package loads torch and
diffusers, and every `mmpp` command imports its subcommands' modules to build `--help`.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    worker = subparsers.add_parser(
        "worker", help="draw portraits for a bot through Redis (one per GPU)",
        description="Run a GPU worker: checks that its styles match the bot's (published in Redis), loads the "
        "models, then draws the batches the bot sends it until Ctrl-C or SIGTERM, which let the running batch "
        "finish. Needs REDIS_URL and the bot's QUEUE_SECRET; the bot runs with QUEUE_BACKEND=redis.",
    )
    worker.add_argument(
        "--model-dir", type=Path, default=None, help="models and styles from a `make-tiny-model` folder"
    )
    worker.add_argument(
        "--device", default=None, help="the one device to draw on: auto, cpu, mps, cuda or cuda:N (default: DEVICE)"
    )
    worker.add_argument("--redis-url", default=None, help="override REDIS_URL")
    worker.add_argument("--worker-id", default=None, help="this worker's name in Redis (default: host-pid)")
    worker.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmpp.memory import limit_arenas

    limit_arenas()  # first, before any thread exists: a long-running process's RSS stays flat
    from mmpp.inference.queue.remote.worker import run_worker
    from mmpp.logs import configure_logging
    from mmpp.settings import load_settings

    settings = load_settings(
        # --device is this worker's one device, whatever DEVICES says for a bot's several engines.
        args.env_file, model_dir=args.model_dir, device=args.device, devices="" if args.device else None,
        redis_url=args.redis_url,
        worker_id=args.worker_id,
    )
    configure_logging(args.log_level or settings.log_level, settings.log_format)
    return asyncio.run(run_worker(settings))

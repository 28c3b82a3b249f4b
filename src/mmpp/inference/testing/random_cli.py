"""`mmpp make-random-model`: the production-size models with random weights, for GPU benchmarks."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from mmpp.errors import UserFacingError

# bf16 bytes per parameter, plus room for the LoRA and the configs.
_BYTES_PER_PARAMETER = 2
_SLACK_BYTES = 512 * 1024**2


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "make-random-model",
        help="write SDXL + ControlNet + IP-Adapter + a LoRA style with random weights",
        description="Write the models the bot serves (SDXL base, the canny ControlNet, the ViT-H image "
        "encoder, the Plus-face IP-Adapter, a rank-64 LoRA style 'random-style') with their exact "
        "production configs and random weights, in the layout `--model-dir` reads (plus a full-size image "
        "safety checker that never flags). --size full is about 13 GB of bf16 safetensors and needs as much "
        "free memory to build; --size tiny is `make-tiny-model`.",
    )
    cmd.add_argument("directory", type=Path)
    cmd.add_argument("--size", choices=("full", "tiny"), default="full")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.set_defaults(func=run_make_random_model)


def full_size_bytes() -> int:
    from mmpp.inference.testing.random_configs import PARAMETER_COUNTS

    return sum(PARAMETER_COUNTS.values()) * _BYTES_PER_PARAMETER + _SLACK_BYTES


def run_make_random_model(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.size == "tiny":
        from mmpp.inference.testing.tiny_model import make_tiny_model

        make_tiny_model(args.directory, seed=args.seed)
    else:
        from tqdm import tqdm

        from mmpp.inference.testing.random_model import make_random_model

        args.directory.mkdir(parents=True, exist_ok=True)
        need, free = full_size_bytes(), shutil.disk_usage(args.directory).free
        if free < need:
            raise UserFacingError(
                f"{args.directory} has {free / 1024**3:.1f} GB free; the full-size model needs "
                f"{need / 1024**3:.1f} GB. Pick another folder or use --size tiny."
            )
        parts = ("sdxl", "controlnet", "ip-adapter", "safety-checker", "styles")
        with tqdm(total=len(parts), desc="random model", unit="part", file=sys.stderr) as bar:

            def on_part(name: str) -> None:
                bar.set_postfix_str(name)
                bar.update()

            make_random_model(args.directory, seed=args.seed, on_part=on_part)
    print(f"wrote a {args.size} random model to {args.directory} in {time.perf_counter() - started:.1f}s")
    return 0

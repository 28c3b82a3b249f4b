"""`mmpp generate` and `mmpp make-tiny-model`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mmpp.errors import UserFacingError


def register(subparsers: argparse._SubParsersAction) -> None:
    gen = subparsers.add_parser(
        "generate", help="turn one selfie into a styled portrait (PNG)", description="Turn one selfie into a "
        "styled portrait, with the same engine the bot uses."
    )
    gen.add_argument("selfie", type=Path, help="a photo with one face (JPEG, PNG, WebP, GIF)")
    gen.add_argument("--style", required=True, help="style name (a folder in the styles folder)")
    gen.add_argument("--output", "-o", type=Path, required=True, help="where to write the PNG")
    gen.add_argument("--seed", type=int, default=None, help="same seed, same picture (default: random)")
    gen.add_argument("--steps", type=int, default=None, help="denoising steps (default: the style's)")
    add_model_dir_option(gen)
    gen.set_defaults(func=run_generate)

    tiny = subparsers.add_parser(
        "make-tiny-model",
        help="write a tiny random-weight SDXL for tests and smoke runs",
        description="Write a tiny random-weight SDXL, VAE, ControlNet, IP-Adapter and one style "
        "('tiny-style') in the production on-disk layouts. Its images are noise; its code paths are real.",
    )
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument(
        "--ip-adapter", choices=("plus", "plain"), default="plus",
        help="plus: the Plus-face Resampler that production loads (default); plain: the original IP-Adapter",
    )
    tiny.set_defaults(func=run_make_tiny_model)


def add_model_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir", type=Path, default=None,
        help="take every model, and the styles folder, from a folder made by `mmpp make-tiny-model`",
    )
    parser.add_argument(
        "--device", default=None, help="auto, cpu, mps, cuda or cuda:N (default: DEVICE, which is auto)"
    )


class SelfieUnreadable(UserFacingError):
    code = "selfie_unreadable"


def run_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from inference.engine import Engine, GenerationRequest, StepProgress, random_seed
    from inference.loader import image_limits, load_catalog
    from inference.preprocess import locate_face
    from mmpp.settings import load_settings

    try:
        data = args.selfie.read_bytes()
    except OSError as exc:
        raise SelfieUnreadable(f"Cannot read {args.selfie}: {exc.strerror or exc}.") from None
    if args.steps is not None and args.steps < 1:
        raise UserFacingError("--steps must be at least 1.")
    settings = load_settings(args.env_file, model_dir=args.model_dir, device=args.device)
    # Everything that can reject the request is checked before the slow model load.
    style = load_catalog(settings).get(args.style)
    located = locate_face(data, image_limits(settings))
    started = time.perf_counter()
    engine = Engine.from_settings(settings)
    face = engine.prepare(located)
    seed = args.seed if args.seed is not None else random_seed()
    steps = args.steps or style.definition.steps
    with tqdm(total=steps, desc=f"{style.name} seed {seed}", unit="step", file=sys.stderr) as bar:

        def on_step(progress: StepProgress) -> None:
            bar.update(progress.step - bar.n)

        result = engine.generate(
            [GenerationRequest(face=face, style=style.name, seed=seed, steps=args.steps)], on_step=on_step
        )[0]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(result.png())
    print(f"wrote {args.output} (style {style.name}, seed {seed}, {time.perf_counter() - started:.1f}s)")
    return 0


def run_make_tiny_model(args: argparse.Namespace) -> int:
    from inference.tiny_model import make_tiny_model

    started = time.perf_counter()
    make_tiny_model(args.directory, seed=args.seed, ip_adapter=args.ip_adapter)
    print(f"wrote a tiny model to {args.directory} in {time.perf_counter() - started:.1f}s")
    return 0

"""`mmpp generate`, `mmpp inspect` and `mmpp make-tiny-model`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mmpp.errors import UserFacingError

if TYPE_CHECKING:
    from mmpp.inference.engine import Engine, GenerationRequest, GenerationResult


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
    gen.add_argument(
        "--no-guard", action="store_true",
        help="skip the unlinkable guard (by default a portrait face matching would tie to the selfie is redrawn)",
    )
    add_model_dir_option(gen)
    gen.set_defaults(func=run_generate)

    inspect = subparsers.add_parser(
        "inspect", help="show what the engine would get from a selfie (mask, structure, face)",
        description="Write what the engine would draw a selfie from: mask.png (the person, white), "
        "control.png (the ControlNet's lines), face.png (the IP-Adapter's image), and print one line per "
        "step. Needs no model.",
    )
    inspect.add_argument("selfie", type=Path, help="a photo with one face (JPEG, PNG, WebP, GIF)")
    inspect.add_argument("--out", type=Path, required=True, help="folder for mask.png, control.png, face.png")
    inspect.add_argument("--size", type=int, default=1024, help="the model's drawing size (default: 1024, SDXL's)")
    inspect.set_defaults(func=run_inspect)

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

    from mmpp.inference.engine import Engine, GenerationRequest, StepProgress, random_seed
    from mmpp.inference.loader import image_limits, load_catalog
    from mmpp.inference.preprocess import locate_face
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

        request = GenerationRequest(face=face, style=style.name, seed=seed, steps=args.steps,
                                    unlinkable=not args.no_guard)
        result = engine.generate([request], on_step=on_step)[0]
    if args.no_guard:
        print("The unlinkable guard is off (--no-guard): the portrait was not checked against the selfie.",
              file=sys.stderr)
    elif result.image is not None:
        result = guarded(engine, request, result, style.definition.ip_adapter_scale)
        seed = result.seed
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(result.png())
    print(f"wrote {args.output} (style {style.name}, seed {seed}, unlinkable guard: {result.guard}, "
          f"{time.perf_counter() - started:.1f}s)")
    return 0


def guarded(
    engine: Engine, request: GenerationRequest, result: GenerationResult, style_ip_scale: float
) -> GenerationResult:
    """The bot's unlinkable guard on one portrait: redrawn while it matches the selfie; what is left
    that may still match (or could not be measured) is said on stderr."""
    from mmpp.inference.queue import unlinkable

    try:
        verdict = unlinkable.judge(request, result)
    except Exception as exc:  # fails closed, as in the worker: the portrait is kept, and said to be unmeasured
        print(f"The likeness check failed ({exc}).", file=sys.stderr)
        verdict = unlinkable.unmeasured(request)
    if verdict.linkable:
        result = unlinkable.redraw(engine.generate, request, result, verdict, style_ip_scale)
    else:
        result = verdict.settle(result)
    if result.guard == "linkable":
        print("Warning: face matching could still link this portrait to the selfie, even after two redraws.",
              file=sys.stderr)
    elif result.guard == "unmeasured":
        print("Warning: the unlinkable guard could not measure this portrait; treat it as linkable to the selfie.",
              file=sys.stderr)
    return result


def run_inspect(args: argparse.Namespace) -> int:
    from mmpp.inference.conditioning import condition
    from mmpp.inference.faces import detect_faces
    from mmpp.inference.loader import image_limits
    from mmpp.inference.preprocess import decode_image, pick_face, square_around
    from mmpp.settings import load_settings

    try:
        data = args.selfie.read_bytes()
    except OSError as exc:
        raise SelfieUnreadable(f"Cannot read {args.selfie}: {exc.strerror or exc}.") from None
    if not 64 <= args.size <= 4096:
        raise UserFacingError("--size must be between 64 and 4096.")
    limits = image_limits(load_settings(args.env_file))
    started = time.perf_counter()
    # The bot's own steps, one at a time, so each can be shown.
    image = decode_image(data, limits)
    print(f"photo: {image.width}x{image.height} pixels, {len(data) / 1024:.0f} KiB")
    faces = detect_faces(image, limits.min_face_px)
    face = pick_face(faces, limits)
    b = face.box
    print(f"face: box x={b.x} y={b.y}, {b.w} px wide, detector score {face.score:.2f} "
          f"({len(faces)} face{'s' if len(faces) != 1 else ''} seen)")
    located = square_around(image, face)
    print(f"rotation: turned {located.turned:+.0f} degrees to level the eyes (they were {face.roll:+.1f})")
    made = condition(located, args.size)
    box = located.box
    print(f"square: {located.image.width} px, the face at x={box.x} y={box.y}, {box.w} px wide")
    print(f"mask: the person covers {made.mask_share:.0%} of the square")
    low, high = made.thresholds
    print(f"structure: lines found at {made.structure_side} px (Canny {low:.0f}/{high:.0f}), drawn at {args.size} px; "
          f"{made.face_edge_density():.1%} of the face box is lines")
    left, top, side = made.face_crop
    print(f"face crop: {side} px at x={left} y={top} of the square, on grey, as {made.prepared.face.width} px")
    args.out.mkdir(parents=True, exist_ok=True)
    made.mask.save(args.out / "mask.png")
    made.prepared.control.save(args.out / "control.png")
    made.prepared.face.save(args.out / "face.png")
    print(f"wrote mask.png, control.png and face.png to {args.out} ({time.perf_counter() - started:.2f}s)")
    return 0


def run_make_tiny_model(args: argparse.Namespace) -> int:
    from mmpp.inference.testing.tiny_model import make_tiny_model

    started = time.perf_counter()
    make_tiny_model(args.directory, seed=args.seed, ip_adapter=args.ip_adapter)
    print(f"wrote a tiny model to {args.directory} in {time.perf_counter() - started:.1f}s")
    return 0

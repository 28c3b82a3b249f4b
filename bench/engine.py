"""Engine overhead against a bare diffusers call, and the cost of switching styles.

    python bench/engine.py [--model-dir DIR] [--steps N] [--reps N] [--device cpu|cuda]
    python bench/engine.py --quick    # 2 steps, 2 reps, on the CPU (what CI runs)

Without --model-dir it builds the tiny random-weight model in a temporary folder. Every row is
measured in this run, interleaved, and reported as a ratio to the bare diffusers call.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/engine.py` puts this folder first on sys.path, where bench/queue.py would shadow the standard
# library's `queue` (asyncio imports it): the folder leaves sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from PIL import Image
from skimage import data as skdata

from mmpp.inference.engine import Engine, GenerationRequest
from mmpp.inference.testing.tiny_model import add_tiny_style, make_tiny_model
from mmpp.settings import load_settings


def jpeg(array: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=92)  # type: ignore[arg-type]
    return buffer.getvalue()


def timed(fn: Callable[[], object]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="2 steps, 2 reps, on the CPU")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.reps, args.device = 2, 2, "cpu"

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = make_tiny_model(Path(tmp) / "tiny")
            add_tiny_style(model_dir, "second-style", seed=2)
        # The tiny model's own LoRA styles; the built-in prompt styles would sort first.
        settings = load_settings(None, model_dir=model_dir, device=args.device, builtin_styles=False)
        engine = Engine.from_settings(settings)
        run(engine, args.steps, args.reps)


def run(engine: Engine, steps: int, reps: int) -> None:
    selfie = jpeg(skdata.astronaut())
    styles = engine.catalog.names()
    style = engine.catalog.get(styles[0])
    face = engine.prepare(selfie)
    definition = style.definition
    pipe = engine.pipe

    def bare() -> object:
        # Exactly what the engine asks diffusers for, with nothing around it.
        return pipe(
            prompt=[definition.render_prompt(None)],
            negative_prompt=[definition.negative_prompt],
            image=[face.control],
            ip_adapter_image=[[face.face]],
            controlnet_conditioning_scale=definition.controlnet_scale,
            num_inference_steps=steps,
            guidance_scale=definition.guidance,
            height=engine.resolution,
            width=engine.resolution,
            generator=[torch.Generator("cpu").manual_seed(1)],
            output_type="pil",
        ).images[0].tobytes()

    def engine_call(on_step: Callable[..., None] | None = None) -> Callable[[], object]:
        return lambda: engine.generate(
            [GenerationRequest(face=face, style=style.name, seed=1, steps=steps)], on_step=on_step
        )[0].png()

    def with_previews(progress: object) -> None:
        if progress.step % 5 == 0:  # type: ignore[attr-defined]
            progress.preview(0)  # type: ignore[attr-defined]

    portrait = Image.new("RGB", (engine.resolution, engine.resolution), (200, 160, 120))

    def safety_check() -> object:
        # What `engine.generate` adds per finished image (and per preview) when SAFETY_CHECKER is on.
        return engine.safety.check([portrait], ["strict"]) if engine.safety is not None else None

    rows: dict[str, Callable[[], object]] = {
        "bare diffusers call": bare,
        "engine.generate": engine_call(),
        "safety check alone (one image)": safety_check,
        "engine.generate + preview every 5 steps": engine_call(with_previews),
        "engine.prepare + generate (selfie bytes in)": lambda: engine.generate(
            [GenerationRequest(face=engine.prepare(selfie), style=style.name, seed=1, steps=steps)]
        )[0].png(),
    }
    engine.switch_style(style)
    for fn in rows.values():  # warm-up: first calls allocate and pick kernels
        fn()
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(reps):
        for name, fn in rows.items():
            engine.switch_style(style)
            times[name].append(timed(fn))

    switch_times: list[float] = []
    if len(styles) > 1:
        a, b = engine.catalog.get(styles[0]), engine.catalog.get(styles[1])
        for i in range(reps * 4):
            switch_times.append(timed(lambda i=i: engine.switch_style(b if i % 2 == 0 else a)))

    base = statistics.median(times["bare diffusers call"])
    device = f"{pipe.device.type} ({torch.cuda.get_device_name()})" if pipe.device.type == "cuda" else "cpu"
    print(f"\nEngine benchmark: {device}, {engine.resolution}x{engine.resolution}, {steps} steps, "
          f"median of {reps} interleaved runs\n")
    print("| what | median s/image | p90 s/image | ratio to bare diffusers |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        ordered = sorted(values)
        median = statistics.median(values)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        print(f"| {name} | {median:.4f} | {p90:.4f} | {median / base:.3f} |")
    if switch_times:
        switch = statistics.median(switch_times)
        print(f"| style switch (set_adapters + scheduler) | {switch:.5f} | "
              f"{sorted(switch_times)[int(0.9 * len(switch_times))]:.5f} | {switch / base:.4f} of one generation |")
    overhead = statistics.median(times["engine.generate"]) / base - 1
    print(f"\nengine overhead over bare diffusers: {overhead * 100:+.1f}% (target: within 10%)")


if __name__ == "__main__":
    main()

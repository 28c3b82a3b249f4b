"""The engine on the size of model it serves, against plain diffusers measured in the same run.

    python bench/gpu.py                       # on a GPU: full-size SDXL (random weights) built in memory
    python bench/gpu.py --model-dir DIR       # the same, loaded from `mmpp make-random-model DIR`
    python bench/gpu.py --memory              # only the memory plans against diffusers' offload options
    python bench/gpu.py --memory --reps 1 --steps 10 --plans 12gb,8gb --diffusers 2,4   # a short GPU session
    python bench/gpu.py --quick               # CPU smoke run on the tiny model (what CI runs)

One process, one device. Every configuration draws at the bench resolution (1024² at full size)
with CFG, the ControlNet, the IP-Adapter and a LoRA style, for each batch size: plain diffusers
(same components, bf16 + SDPA: the baseline), then the engine (which also runs the image safety
check on every picture) with each speed switch added one at a time, the style switch under compile
(and whether it recompiled), the fast preset, and the time from nothing to the first image
(load + compile + warm-up). Then the memory plans (bench/gpu_memory.py): peak GPU memory and time per
plan and per candidate set, against plain diffusers' own offload options, with the accounted figures.
Without CUDA it runs the tiny model, small and few steps, so the script itself is tested.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/gpu.py` puts this folder first on sys.path, where queue.py would shadow the standard library's
# `queue` (asyncio imports it); the repository root takes its place, for bench.gpu_setup and bench.gpu_memory.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import io
import shutil
import statistics
import tempfile
from collections.abc import Callable

import torch
from PIL import Image
from skimage import data as skdata

from bench.gpu_memory import DIFFUSERS_OPTIONS, print_memory_table, run_memory
from bench.gpu_setup import Bench, Row, timed
from mmpp.inference.device import place
from mmpp.inference.engine import Engine, GenerationRequest


def selfie() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def requests(engine: Engine, style: str, batch: int, steps: int | None, **kwargs: object) -> list[GenerationRequest]:
    face = engine.prepare(SELFIE)
    return [GenerationRequest(face=face, style=style, seed=i, steps=steps, **kwargs) for i in range(batch)]  # type: ignore[arg-type]


def plain_call(engine: Engine, style: str, batch: int, steps: int) -> Callable[[], object]:
    """Exactly the diffusers call the engine makes, with nothing of the engine around it."""
    definition = engine.catalog.get(style).definition
    face = engine.prepare(SELFIE)
    pipe = engine.pipe
    engine.switch_style(engine.catalog.get(style))
    return lambda: pipe(
        prompt=[definition.render_prompt()] * batch,
        negative_prompt=[definition.negative_prompt] * batch,
        image=[face.control] * batch,
        ip_adapter_image=[[face.face] * batch],
        controlnet_conditioning_scale=definition.controlnet_scale,
        num_inference_steps=steps,
        guidance_scale=definition.guidance,
        height=engine.resolution,
        width=engine.resolution,
        generator=[torch.Generator("cpu").manual_seed(i) for i in range(batch)],
        output_type="pil",
    ).images


def engine_rows(bench: Bench, name: str, engine: Engine, style: str) -> list[Row]:
    return [
        bench.measure(name, lambda b=b: engine.generate(requests(engine, style, b, bench.steps)), b, bench.steps)
        for b in bench.batches
    ]


def switch_row(bench: Bench, engine: Engine, styles: list[str]) -> Row:
    """Median time of a style switch under compile, and whether drawing after one recompiled."""
    a, b = (engine.catalog.get(name) for name in styles[:2])
    times = [timed(lambda i=i: engine.switch_style(b if i % 2 == 0 else a)) for i in range(2 * bench.reps + 2)]
    before = compiles()
    with torch._dynamo.config.patch(error_on_recompile=True):
        try:
            for style in styles[:2]:
                engine.generate(requests(engine, style, 1, 2))
            note = f"recompiles: {compiles() - before}"
        except Exception as exc:  # dynamo's RecompileError: exactly what this row exists to catch
            note = f"RECOMPILED: {str(exc).splitlines()[0][:80]}"
    return Row("style switch under compile (hotswap)", None, statistics.median(times), 0, None, note)


def compiles() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def fast_rows(bench: Bench, engine: Engine) -> list[Row]:
    fast_styles = [s for s in engine.catalog.styles.values() if getattr(s.definition, "fast", None)]
    if not fast_styles:
        return []
    style = fast_styles[0]
    steps = style.definition.fast.steps  # type: ignore[attr-defined]
    return [
        bench.measure("fast preset (few-step LoRA stacked on the style)",
                      lambda b=b: engine.generate(requests(engine, style.name, b, None, fast=True)), b, steps)
        for b in bench.batches
    ]


def run(bench: Bench) -> list[Row]:
    rows: list[Row] = []
    styles = sorted(p.name for p in bench.styles_dir.iterdir() if (p / "style.json").is_file())
    style = styles[0]

    # 1. plain diffusers and the engine with no switch share one pipeline: the same weights.
    engine, _ = bench.engine(bench.options())
    for b in bench.batches:
        rows.append(bench.measure("plain diffusers (same components)", plain_call(engine, style, b, bench.steps), b,
                                  bench.steps))
    rows += engine_rows(bench, "engine, no switch", engine, style)
    del engine

    # 2. each switch added to the ones before it.
    switches: dict[str, object] = {}
    for label, change in (("+ channels_last", {"channels_last": True}), ("+ fused QKV", {"fuse_qkv": True})):
        switches.update(change)
        engine, _ = bench.engine(bench.options(**switches))
        rows += engine_rows(bench, f"engine {label}", engine, style)
        del engine
    for mode in bench.compile_modes:
        engine, ready_s = bench.engine(bench.options(**switches, compile=mode, warmup=True))
        first = timed(lambda e=engine: e.generate(requests(e, style, 1, bench.steps)))
        rows += engine_rows(bench, f"engine + compile {mode}", engine, style)
        rows.append(switch_row(bench, engine, styles))
        rows.append(Row(f"time to first image, compile {mode} (load + compile + warm-up + 1 image)", None,
                        ready_s + first, bench.steps, None, f"warm-up picked batch {engine.preferred_batch_size}"))
        rows += fast_rows(bench, engine)
        del engine
    return rows


def print_table(bench: Bench, rows: list[Row]) -> None:
    device = f"cuda ({torch.cuda.get_device_name()})" if bench.device.type == "cuda" else bench.device.type
    side = "1024" if bench.size == "full" else "tiny-model"
    print(f"\nGPU benchmark: {device}, {bench.size} model, {side} px, {bench.steps} steps, CFG, ControlNet + "
          f"IP-Adapter + LoRA style, {str(bench.dtype).removeprefix('torch.')} + SDPA throughout, "
          f"median of {bench.reps}\n")
    print("| configuration | batch | s/image | it/s | peak GB | ratio to plain diffusers |")
    print("|---|---:|---:|---:|---:|---:|")
    plain = {r.batch: r.per_image for r in rows if r.name.startswith("plain")}
    for r in rows:
        peak = f"{r.peak_gb:.2f}" if r.peak_gb is not None else "-"
        if r.batch is None:
            one = plain.get(1) or next(iter(plain.values()))
            print(f"| {r.name} | - | {r.seconds:.4f} s | - | - | {r.seconds / one:.3f} of one image; {r.note} |")
            continue
        its = f"{r.steps / r.seconds:.2f}" if r.steps else "-"
        note = f" ({r.note})" if r.note else ""
        ratio = r.per_image / plain[r.batch]
        print(f"| {r.name} | {r.batch} | {r.per_image:.4f} | {its} | {peak} | {ratio:.3f}{note} |")
    print("\nratio: seconds per image against plain diffusers at the same batch size (below 1 is faster).")


def prepare_styles(bench: Bench, folder: Path) -> None:
    """Two LoRA styles (the second narrower, with other adapter scales, so a switch changes them all)."""
    from diffusers import UNet2DConditionModel

    from mmpp.inference.style_definition import FastPreset, LoraSource
    from mmpp.inference.testing.random_configs import SDXL_UNET
    from mmpp.inference.testing.random_lora import write_lora_file, write_lora_style

    # A Lightning-like preset: a few-step LoRA with trailing Euler, 4 steps, no CFG.
    fast = FastPreset(lora=LoraSource(source="fast.safetensors"), scheduler="euler_trailing", steps=4, guidance=0.0)
    config = SDXL_UNET if bench.model_dir is None else UNet2DConditionModel.load_config(bench.model_dir / "sdxl/unet")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)  # a LoRA needs the layer shapes only
    if bench.model_dir is None:
        write_lora_style(folder, "random-style", unet, rank=64, seed=1)
        second = write_lora_style(folder, "second-style", unet, rank=32, seed=2, ip_adapter_scale=0.4,
                                  controlnet_scale=0.7, fast=fast)
        write_lora_file(second / "fast.safetensors", unet, rank=64, seed=3)
        return
    for source in (bench.model_dir / "styles").iterdir():
        if (source / "style.json").is_file():
            shutil.copytree(source, folder / "styles" / source.name)
    full = bench.size == "full"
    second = write_lora_style(folder, "second-style", unet, rank=32 if full else 8, seed=2, steps=bench.steps,
                              ip_adapter_scale=0.4, controlnet_scale=0.7,
                              fast=fast if full else fast.model_copy(update={"steps": 2}))
    write_lora_file(second / "fast.safetensors", unet, rank=64 if full else 4, seed=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model-dir", type=Path, help="load from disk (make-random-model or make-tiny-model)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--compile-modes", default="default,max-autotune")
    parser.add_argument("--memory", action="store_true",
                        help="only the memory plans and diffusers' offload options (bench/gpu_memory.py)")
    parser.add_argument("--plans", help="memory plans to measure, comma-separated (default: all)")
    parser.add_argument("--diffusers", help="diffusers' memory options to measure, by number, comma-separated: "
                        "1 everything resident, 2 model offload, 3 model offload + fp8, 4 group offload, "
                        "5 sequential offload (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke run: tiny model, 2 steps, batch 1, one rep, compile traced with the "
                             "eager backend (guards and hotswap checked, no code generated)")
    args = parser.parse_args()

    placement = place(args.device, "auto", "--device")  # the bot's own rule for `auto`
    print(f"device {placement.device}, {str(placement.dtype).removeprefix('torch.')}: {placement.why}")
    device = placement.device
    size = "full" if device.type == "cuda" and not args.quick else "tiny"
    if args.quick:
        args.steps, args.batches, args.reps, args.compile_modes = 2, "1", 1, "default"
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None and size == "tiny":
            from mmpp.inference.testing.tiny_model import make_tiny_model

            model_dir = make_tiny_model(Path(tmp) / "tiny")
        bench = Bench(
            device=device,
            dtype=placement.dtype,
            size=size,
            model_dir=model_dir,
            styles_dir=Path(tmp) / "bench" / "styles",
            steps=args.steps or (30 if size == "full" else 4),
            batches=[int(b) for b in args.batches.split(",")],
            reps=args.reps,
            compile_modes=[m for m in args.compile_modes.split(",") if m],
            compile_backend="eager" if args.quick else "inductor",
        )
        prepare_styles(bench, bench.styles_dir.parent)
        if not args.memory:
            print_table(bench, run(bench))
        style = sorted(p.name for p in bench.styles_dir.iterdir() if (p / "style.json").is_file())[0]
        labels = list(DIFFUSERS_OPTIONS)
        options = [labels[int(n) - 1] for n in args.diffusers.split(",")] if args.diffusers else None
        plans = args.plans.split(",") if args.plans else None
        print_memory_table(bench, run_memory(bench, style, SELFIE, plans, options))


SELFIE = selfie()

if __name__ == "__main__":
    main()

"""The memory plans on one card, against plain diffusers' own offload options, in one run.

`bench/gpu.py --memory` (or the end of a full `bench/gpu.py` run). For each plan (inference/memory_plan.py)
at batch 1 and at its largest batch, and for candidate sets of 1, 2 and 4 images (split into the
plan's batches, as the queue splits them): peak allocated and peak reserved GPU memory
(`torch.cuda.max_memory_allocated` / `max_memory_reserved`: PyTorch's own allocations, the CUDA
context excluded), seconds per image, and the accounted peak beside them. Then plain diffusers on
the same components (same LoRA style, IP-Adapter and ControlNet; no safety check, which the engine
runs on every picture) with each of its own memory options. Every configuration starts from a fresh
copy of the models in host memory; a configuration that fails (out of memory, an option diffusers
refuses) prints its row with the reason, and the run goes on.
"""

from __future__ import annotations

import copy
import statistics
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bench.gpu_setup import Bench, release, timed
from mmpp.inference.engine import Engine, GenerationRequest
from mmpp.inference.loader import load_pipeline, load_style_adapters
from mmpp.inference.memory_plan import GIB, PLANS, MemoryPlan, full_size_accounting
from mmpp.inference.safety import load_safety_checker
from mmpp.inference.styles import StyleCatalog
from mmpp.model_sources import ModelSources

CANDIDATE_SETS = (1, 2, 4)


@dataclass
class MemoryRow:
    name: str
    batch: int  # images per engine call
    images: int  # images drawn in the measured call(s): the batch, or a candidate set
    seconds: float | None  # per image
    allocated_gib: float | None
    reserved_gib: float | None
    accounted_gib: float | None = None
    budget_gib: float | None = None
    note: str = ""


class Models:
    """A fresh host-memory copy of the same models for every configuration (plans cast and hook them)."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self._pipe: Any = None
        self._safety: Any = None

    def copy(self) -> tuple[Any, Any]:
        bench = self.bench
        if bench.model_dir is not None:
            sources = ModelSources.from_model_dir(bench.model_dir)
            return (load_pipeline(sources, torch.device("cpu"), bench.dtype),
                    load_safety_checker(sources.safety_checker, torch.device("cpu"), bench.dtype))
        if self._pipe is None:
            from mmpp.inference.testing.random_model import build_random_pipeline
            from mmpp.inference.testing.random_safety import build_random_safety_checker
            from mmpp.inference.testing.random_spec import FULL

            self._pipe = build_random_pipeline(FULL, device="cpu", dtype=bench.dtype)
            self._safety = build_random_safety_checker(device="cpu", dtype=bench.dtype)
        return copy.deepcopy(self._pipe), copy.deepcopy(self._safety)


def measured(bench: Bench, run: Callable[[int], object], images: int) -> tuple[float, float | None, float | None]:
    """Seconds per image (median of the bench's reps) and peak allocated/reserved GiB over them."""
    cuda = bench.device.type == "cuda"
    if cuda:
        run(2)  # a short first call: allocations, kernel choice
    release()
    if cuda:
        torch.cuda.reset_peak_memory_stats(bench.device)
    times = [timed(lambda: run(bench.steps)) for _ in range(bench.reps)]
    if not cuda:
        return statistics.median(times) / images, None, None
    return (statistics.median(times) / images, torch.cuda.max_memory_allocated(bench.device) / GIB,
            torch.cuda.max_memory_reserved(bench.device) / GIB)


def plan_rows(bench: Bench, models: Models, plan: MemoryPlan, style: str, selfie: bytes) -> list[MemoryRow]:
    release()
    largest = plan.max_batch or max(bench.batches)
    pipe, safety = models.copy()
    catalog = StyleCatalog.load(bench.styles_dir)
    engine = Engine.assemble(pipe, catalog, bench.options(max_batch_size=largest), safety=safety,
                             plan=plan, device=bench.device)
    face = engine.prepare(selfie)
    accounting = engine.memory
    assert accounting is not None

    def draw(images: int) -> Callable[[int], object]:
        def run(steps: int) -> None:
            requests = [GenerationRequest(face=face, style=style, seed=i, steps=steps) for i in range(images)]
            for start in range(0, images, largest):  # as the queue splits a set
                engine.generate(requests[start:start + largest])
        return run

    rows = []
    batch_rows: dict[int, MemoryRow] = {}
    for batch in sorted({1, largest}):
        seconds, allocated, reserved = measured(bench, draw(batch), batch)
        batch_rows[batch] = MemoryRow(f"plan {plan.name}", batch, batch, seconds, allocated, reserved,
                                      accounting.peak_gib(batch), plan.budget_gib)
        rows.append(batch_rows[batch])
    for images in CANDIDATE_SETS:
        batch = min(images, largest)
        if images == batch and batch in batch_rows:
            same = batch_rows[batch]
            rows.append(MemoryRow(f"plan {plan.name}, set of {images}", batch, images, same.seconds,
                                  same.allocated_gib, same.reserved_gib, same.accounted_gib, plan.budget_gib,
                                  f"= the batch-{batch} row"))
            continue
        seconds, allocated, reserved = measured(bench, draw(images), images)
        rows.append(MemoryRow(f"plan {plan.name}, set of {images}", batch, images, seconds, allocated, reserved,
                              accounting.peak_gib(batch), plan.budget_gib, f"{-(-images // batch)} calls of {batch}"))
    return rows


def _fp8_model_offload(pipe: Any, device: torch.device) -> None:
    for model in (pipe.unet, pipe.controlnet):
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    pipe.enable_model_cpu_offload(device=device)


def _group_offload(pipe: Any, device: torch.device) -> None:
    pipe.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"), offload_type="block_level",
                              num_blocks_per_group=1, use_stream=True)


# diffusers' memory guide, each option on its own (the VAE options are the same in every plan above).
DIFFUSERS_OPTIONS: dict[str, Callable[[Any, torch.device], None]] = {
    "everything resident": lambda pipe, device: pipe.to(device),
    "enable_model_cpu_offload": lambda pipe, device: pipe.enable_model_cpu_offload(device=device),
    "enable_model_cpu_offload + fp8 layerwise casting": _fp8_model_offload,
    "enable_group_offload (block level, CUDA stream)": _group_offload,
    "enable_sequential_cpu_offload": lambda pipe, device: pipe.enable_sequential_cpu_offload(device=device),
}


def diffusers_rows(bench: Bench, models: Models, style: str, selfie: bytes, options: list[str]) -> list[MemoryRow]:
    rows = []
    for label in options:
        name = f"plain diffusers, {label}"
        if bench.device.type != "cuda" and label != "everything resident":
            rows.append(MemoryRow(name, 1, 1, None, None, None, note="needs CUDA"))
            continue
        release()
        try:
            rows.append(diffusers_row(bench, models, style, selfie, label))
        except Exception as exc:  # out of memory, or an option diffusers refuses with these components
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:90]
            rows.append(MemoryRow(name, 1, 1, None, None, None, note=f"failed: {first}"))
            traceback.print_exc()
    return rows


def diffusers_row(bench: Bench, models: Models, style_name: str, selfie: bytes, label: str) -> MemoryRow:
    """One option on a fresh copy; the copy goes when this returns, before the next one is made."""
    pipe, _ = models.copy()
    catalog = StyleCatalog.load(bench.styles_dir)
    load_style_adapters(pipe, catalog)
    style = catalog.get(style_name)
    pipe.set_adapters([style.name], adapter_weights=[style.definition.lora.scale])  # type: ignore[union-attr]
    pipe.set_ip_adapter_scale(style.definition.ip_adapter_scale)
    DIFFUSERS_OPTIONS[label](pipe, bench.device)
    seconds, allocated, reserved = measured(bench, plain_call(pipe, style, selfie), 1)
    return MemoryRow(f"plain diffusers, {label}", 1, 1, seconds, allocated, reserved,
                     note="prompts encoded every call")


def plain_call(pipe: Any, style: Any, selfie: bytes) -> Callable[[int], object]:
    """The diffusers call the engine makes, prompts as text (diffusers encodes them every call)."""
    from mmpp.inference.conditioning import prepare
    from mmpp.inference.preprocess import ImageLimits, locate_face

    definition = style.definition
    resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor
    face = prepare(locate_face(selfie, ImageLimits()), resolution)
    return lambda steps: pipe(
        prompt=[definition.render_prompt()], negative_prompt=[definition.negative_prompt],
        image=[face.control], ip_adapter_image=[[face.face]],
        controlnet_conditioning_scale=definition.controlnet_scale, num_inference_steps=steps,
        guidance_scale=definition.guidance, height=resolution, width=resolution,
        generator=[torch.Generator("cpu").manual_seed(0)], output_type="pil",
    ).images


def run_memory(bench: Bench, style: str, selfie: bytes, plans: list[str] | None = None,
               options: list[str] | None = None) -> list[MemoryRow]:
    """Every plan, then every diffusers option (or the ones named: a short GPU session runs a few)."""
    models = Models(bench)
    rows: list[MemoryRow] = []
    for plan in [PLANS[name] for name in plans or PLANS]:
        try:
            rows += plan_rows(bench, models, plan, style, selfie)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:90]
            rows.append(MemoryRow(f"plan {plan.name}", 1, 1, None, None, None, note=f"failed: {first}"))
            traceback.print_exc()
    rows += diffusers_rows(bench, models, style, selfie, options or list(DIFFUSERS_OPTIONS))
    return rows


def print_memory_table(bench: Bench, rows: list[MemoryRow]) -> None:
    device = f"cuda ({torch.cuda.get_device_name(bench.device)})" if bench.device.type == "cuda" else "cpu"
    print(f"\nMemory plans: {device}, {bench.size} model, {bench.steps} steps, CFG, ControlNet + IP-Adapter + "
          f"LoRA style. Peaks in GiB (PyTorch's allocator, CUDA context excluded); 'accounted' is the plan's "
          f"own accounting (weights counted, activations its stated allowance), not a measurement.\n")
    print("| configuration | batch | images | s/image | ratio to plan resident | peak allocated GiB | "
          "peak reserved GiB | accounted GiB | budget GiB | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    base = next((r.seconds for r in rows if r.name == "plan resident" and r.batch == 1 and r.seconds), None)
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for r in rows:
        ratio = r.seconds / base if base and r.seconds else None
        print(f"| {r.name} | {r.batch} | {r.images} | {fmt(r.seconds, '.3f')} | {fmt(ratio, '.2f')} | "
              f"{fmt(r.allocated_gib, '.2f')} | {fmt(r.reserved_gib, '.2f')} | {fmt(r.accounted_gib, '.2f')} | "
              f"{fmt(r.budget_gib, '.1f')} | {r.note} |")
    print_accounted_table()


def print_accounted_table() -> None:
    """Production's models (meta device) under each plan: what the README quotes, labelled accounted."""
    print("\nAccounted at full size (production's models built on the meta device; activations are the "
          "plans' stated allowance at 1024², not measured):\n")
    print("| plan | card | resident weights GiB | offloaded GiB | on the CPU GiB | fp8 | VAE tiling | "
          "largest batch | accounted peak GiB, batch 1 | at largest batch | budget GiB |")
    print("|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|")
    for plan in PLANS.values():
        acc = full_size_accounting(plan)
        print(f"| {plan.name} | {plan.card_gb:g} GB | {acc.resident_gib:.2f} | {acc.bytes_where('offload') / GIB:.2f} "
              f"| {acc.bytes_where('cpu') / GIB:.2f} | {'yes' if plan.fp8 else 'no'} | "
              f"{'yes' if plan.vae_tiling else 'no'} | {plan.max_batch} | {acc.peak_gib(1):.2f} | "
              f"{acc.peak_gib(plan.max_batch):.2f} | {plan.budget_gib:.1f} |")

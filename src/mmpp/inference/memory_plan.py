"""Memory plans: where each model lives, so the bot fits the GPU its operator owns.

Everything resident in bf16 is about 12.2 GB of weights (`random_configs.PARAMETER_COUNTS`) before a
single activation: more than a 12 GB card holds. A plan says, per component:

    resident   on the GPU for good (the UNet and ControlNet run 30 times a portrait)
    cpu        runs on the CPU: the text encoders, needed once per prompt, whose output the engine
               caches (inference/prompt_cache.py), so a cached prompt never touches them
    offload    in host memory, copied onto the GPU for its one use per batch (the IP-Adapter's image
               encoder, the safety checker): inference/offload.py

plus whether the UNet and ControlNet weights are stored in fp8 (cast up to bf16 layer by layer) and
whether the VAE decodes in tiles, and the largest batch it fits at 1024². `GPU_MEMORY_GB` (default:
what the device reports) picks the largest plan the card holds; `MEMORY_PLAN` names one outright.
On a CPU (no GPU memory to save) the default is `host`: everything in place, no batch cap.

Accounting: weights are counted from the modules themselves (stored bytes, fp8 included); the
activations are a stated allowance per phase at 1024² (below), scaled by pixel count. A test builds
the full-size models on the meta device and checks each plan's peak against its budget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from mmpp.inference.offload import Offloaded, store_in_fp8, weight_bytes
from mmpp.logs import log_event

if TYPE_CHECKING:
    from diffusers import StableDiffusionXLControlNetPipeline

    from mmpp.inference.safety import SafetyChecker

log = logging.getLogger(__name__)

Placement = Literal["resident", "cpu", "offload"]
PlanName = Literal["auto", "resident", "12gb", "8gb"]
GIB = 2**30

# --- the activation allowance, GiB at 1024² with CFG, bf16 and SDPA (stated, not measured) ----------
# A test checks each against a meta-device trace of the full-size models (inference/memory_trace.py:
# 0.42 GiB a step per image, 1.5 GiB for a whole decode, 0.38 GiB tiled), with room to spare for what
# a trace cannot see (cuDNN workspaces, the allocator's rounding).
# Denoising: latents, the ControlNet's conditioning image and residuals, the UNet's skip connections,
# attention through SDPA's memory-efficient kernels; CFG doubles the UNet batch, hence per image.
DENOISE_FIXED_GIB = 0.5
DENOISE_PER_IMAGE_GIB = 0.8
# The VAE decodes one image at a time (slicing, every plan): the 1024² up-blocks at 128 channels are
# the peak. Tiled, four 512² tiles' worth at a time, with their blending buffers.
VAE_DECODE_GIB = 3.2
VAE_TILED_DECODE_GIB = 1.0
# The image encoder at 224² and the safety checker: a few hundred MB of activations at most.
ENCODER_ACTIVATIONS_GIB = 0.2
# The caching allocator's reserved-but-unused memory, cuBLAS workspaces.
ALLOCATOR_SLACK_GIB = 0.3
# Styles' LoRAs stay on the GPU beside the UNet: the accounting keeps room for two rank-64 ones
# (0.17 GiB each); the start-up line counts the real ones and warns when they push a plan over.
LORA_STYLES_ALLOWED = 2
REFERENCE_PIXELS = 1024 * 1024
# GPU_MEMORY_GB is the card as sold; a "12 GB" card reports a little less (11.8 GiB on an RTX 3060).
REPORTED_SLACK_GB = 0.5


@dataclass(frozen=True)
class MemoryPlan:
    name: str
    card_gb: float  # the smallest card (GB as sold) the plan is for
    budget_gib: float  # the most the plan may reserve on the GPU (the targets)
    unet: Placement  # the UNet with the IP-Adapter's layers and every style's LoRA
    controlnet: Placement
    vae: Placement
    text_encoders: Placement
    image_encoder: Placement
    safety_checker: Placement
    fp8: bool  # UNet and ControlNet weights stored in float8_e4m3fn, computed in bf16
    vae_tiling: bool
    max_batch: int | None  # the largest batch at 1024² that the accounting fits (None: no cap)

    def placements(self) -> dict[str, Placement]:
        return {
            "unet": self.unet, "controlnet": self.controlnet, "vae": self.vae, "text_encoders": self.text_encoders,
            "image_encoder": self.image_encoder, "safety_checker": self.safety_checker,
        }

    def where(self, placement: Placement) -> list[str]:
        return [name for name, p in self.placements().items() if p == placement]


RESIDENT = MemoryPlan(
    "resident", card_gb=20, budget_gib=19.0, unet="resident", controlnet="resident", vae="resident",
    text_encoders="resident", image_encoder="resident", safety_checker="resident", fp8=False, vae_tiling=False,
    max_batch=4,
)
PLAN_12GB = MemoryPlan(
    "12gb", card_gb=12, budget_gib=11.0, unet="resident", controlnet="resident", vae="resident",
    text_encoders="cpu", image_encoder="offload", safety_checker="offload", fp8=False, vae_tiling=True,
    max_batch=2,
)
PLAN_8GB = MemoryPlan(
    "8gb", card_gb=8, budget_gib=7.0, unet="resident", controlnet="resident", vae="resident",
    text_encoders="cpu", image_encoder="offload", safety_checker="offload", fp8=True, vae_tiling=True,
    max_batch=2,
)
PLANS: dict[str, MemoryPlan] = {p.name: p for p in (RESIDENT, PLAN_12GB, PLAN_8GB)}
# No GPU (a CPU, or Apple's unified memory): nothing to save, no batch cap beyond MAX_BATCH_SIZE.
HOST = MemoryPlan(
    "host", card_gb=0, budget_gib=float("inf"), unet="resident", controlnet="resident", vae="resident",
    text_encoders="resident", image_encoder="resident", safety_checker="resident", fp8=False, vae_tiling=False,
    max_batch=None,
)


def choose_plan(name: str, gpu_memory_gb: float | None, device: torch.device) -> tuple[MemoryPlan, str]:
    """The plan to run, and what chose it (for the start-up line)."""
    if name != "auto":
        return PLANS[name], "MEMORY_PLAN"
    if gpu_memory_gb is None:
        if device.type != "cuda" or not torch.cuda.is_available():
            # No CUDA here (DEVICE=cuda without one: the loader names it, as it always has).
            return HOST, f"{device.type}: no GPU memory to save"
        gpu_memory_gb = torch.cuda.get_device_properties(device).total_memory / GIB
        chosen_by = f"the device reports {gpu_memory_gb:.1f} GiB"
    else:
        chosen_by = f"GPU_MEMORY_GB={gpu_memory_gb:g}"
    for plan in sorted(PLANS.values(), key=lambda p: -p.card_gb):
        if gpu_memory_gb >= plan.card_gb - REPORTED_SLACK_GB:
            return plan, chosen_by
    smallest = min(PLANS.values(), key=lambda p: p.card_gb)
    return smallest, f"{chosen_by}, below the smallest plan's {smallest.card_gb:g} GB: it may not fit"


# --- accounting -----------------------------------------------------------------------------------


def activation_gib(plan: MemoryPlan, batch: int, pixels: int = REFERENCE_PIXELS) -> dict[str, float]:
    """The stated allowance for each phase of a batch, scaled from 1024² by pixel count."""
    scale = pixels / REFERENCE_PIXELS
    return {
        "image_encoder": ENCODER_ACTIVATIONS_GIB * scale,
        "denoise": (DENOISE_FIXED_GIB + DENOISE_PER_IMAGE_GIB * batch) * scale,
        "vae_decode": (VAE_TILED_DECODE_GIB if plan.vae_tiling else VAE_DECODE_GIB) * scale,
        "safety_checker": ENCODER_ACTIVATIONS_GIB * scale,
    }


@dataclass(frozen=True)
class Accounting:
    """Stored weight bytes per component, split by where the plan puts them, and the peak they make."""

    plan: MemoryPlan
    weights: dict[str, int]  # component -> bytes as stored under this plan
    pixels: int = REFERENCE_PIXELS
    extra_resident: int = 0  # bytes resident beyond the components (the LoRA allowance)

    def bytes_where(self, placement: Placement) -> int:
        return sum(self.weights.get(name, 0) for name in self.plan.where(placement))

    @property
    def resident_gib(self) -> float:
        return (self.bytes_where("resident") + self.extra_resident) / GIB

    def peak_gib(self, batch: int) -> float:
        """Resident weights, plus the worst phase: its activations and whatever visits the GPU for it."""
        phases = activation_gib(self.plan, batch, self.pixels)
        visiting = {name: self.weights.get(name, 0) / GIB if self.plan.placements()[name] == "offload" else 0.0
                    for name in ("image_encoder", "safety_checker")}
        worst = max(phases["image_encoder"] + visiting["image_encoder"], phases["denoise"], phases["vae_decode"],
                    phases["safety_checker"] + visiting["safety_checker"])
        return self.resident_gib + worst + ALLOCATOR_SLACK_GIB * self.pixels / REFERENCE_PIXELS

    def largest_batch(self, limit: int = 16) -> int:
        fits = [b for b in range(1, limit + 1) if self.peak_gib(b) <= self.plan.budget_gib]
        return max(fits, default=0)

    def fields(self) -> dict[str, object]:
        """The start-up line's accounting."""
        return {
            "resident_gib": round(self.resident_gib, 2),
            "offloaded_gib": round(self.bytes_where("offload") / GIB, 2),
            "cpu_gib": round(self.bytes_where("cpu") / GIB, 2),
            "accounted_peak_gib": round(self.peak_gib(self.plan.max_batch or 1), 2),
            "budget_gib": self.plan.budget_gib,
        }


def pipeline_modules(
    pipe: StableDiffusionXLControlNetPipeline, safety: SafetyChecker | None
) -> dict[str, list[torch.nn.Module]]:
    """The plan's components as modules of a loaded pipeline (the UNet carries the IP-Adapter and LoRAs)."""
    modules = {
        "unet": [pipe.unet], "controlnet": [pipe.controlnet], "vae": [pipe.vae],
        "text_encoders": [m for m in (pipe.text_encoder, pipe.text_encoder_2) if m is not None],
        "image_encoder": [pipe.image_encoder] if pipe.image_encoder is not None else [],
        "safety_checker": [safety.model] if safety is not None else [],
    }
    return modules


def account(plan: MemoryPlan, modules: dict[str, list[torch.nn.Module]], *, pixels: int = REFERENCE_PIXELS,
            extra_resident: int = 0) -> Accounting:
    weights = {name: sum(weight_bytes(m) for m in parts) for name, parts in modules.items()}
    return Accounting(plan, weights, pixels, extra_resident)


# --- applying a plan ------------------------------------------------------------------------------


def loads_on_cpu(plan: MemoryPlan) -> bool:
    """Whether the pipeline must be loaded in host memory first: anything off the GPU, or fp8 weights
    (cast before they reach the GPU: an 8 GB card cannot hold the UNet and ControlNet in bf16)."""
    return plan.fp8 or any(p != "resident" for p in plan.placements().values())


def apply_plan(
    pipe: StableDiffusionXLControlNetPipeline, safety: SafetyChecker | None, plan: MemoryPlan,
    device: torch.device, dtype: torch.dtype, *, chosen_by: str = "",
) -> Accounting:
    """Cast, place and hook every component as `plan` says; call after every LoRA is loaded."""
    if plan.fp8:
        for model in (pipe.unet, pipe.controlnet):
            store_in_fp8(model, dtype)
    for model in (pipe.unet, pipe.controlnet, pipe.vae):
        model.to(device)
    for encoder in (pipe.text_encoder, pipe.text_encoder_2):
        if encoder is not None:
            encoder.to(device if plan.text_encoders == "resident" else "cpu")
    if pipe.image_encoder is not None:
        if plan.image_encoder == "offload":
            Offloaded(pipe.image_encoder, device)
        else:
            pipe.image_encoder.to(device)
    if safety is not None:
        if plan.safety_checker == "offload":
            safety.onload = Offloaded(safety.model, device).onloaded
        else:
            safety.model.to(device)
    # One image at a time through the VAE in every plan: a batch of 4 decoded at once would need
    # four times the decoder's peak.
    pipe.vae.enable_slicing()
    resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor
    if plan.vae_tiling:
        pipe.vae.enable_tiling()
        # diffusers tiles only above the VAE's own sample size (1024 for SDXL): half the drawing
        # size makes four tiles (nine with their overlap) at 1024².
        pipe.vae.tile_sample_min_size = resolution // 2
        pipe.vae.tile_latent_min_size = resolution // 2 // pipe.vae_scale_factor
    accounting = account(plan, pipeline_modules(pipe, safety), pixels=resolution * resolution)
    log_event(
        log, logging.INFO, "memory plan",
        plan=plan.name, chosen_by=chosen_by, device=str(device),
        resident=",".join(plan.where("resident")), cpu=",".join(plan.where("cpu")) or "-",
        offloaded=",".join(plan.where("offload")) or "-", fp8=plan.fp8, vae_tiling=plan.vae_tiling,
        max_batch=plan.max_batch, **accounting.fields(),
    )
    if accounting.peak_gib(plan.max_batch or 1) > plan.budget_gib:
        log_event(
            log, logging.WARNING, "memory plan over budget",
            plan=plan.name, accounted_peak_gib=round(accounting.peak_gib(plan.max_batch or 1), 2),
            budget_gib=plan.budget_gib, hint="fewer LoRA styles, or a smaller MEMORY_PLAN",
        )
    return accounting


# --- the full-size models, on the meta device -----------------------------------------------------


def full_size_accounting(plan: MemoryPlan) -> Accounting:
    """`plan` over production's models built on the meta device (no weight allocated, seconds), with
    fp8 storage applied by the same call the engine makes and room for `LORA_STYLES_ALLOWED` LoRAs."""
    from mmpp.inference.testing.random_configs import LORA_RANK, LORA_TARGETS
    from mmpp.inference.testing.random_ip_adapter import cross_attention_hidden_sizes
    from mmpp.inference.testing.random_model import component_builders
    from mmpp.inference.testing.random_spec import FULL, default_dtype

    builders = component_builders(FULL)
    with torch.device("meta"), default_dtype(torch.bfloat16):
        built = {name: build() for name, build in builders.items()}
        unet = built["unet"]
        cross_dim = FULL.resampler["output_dims"]
        # The IP-Adapter's image key/value projections, which load_ip_adapter adds to every cross-attention.
        ip_layers = torch.nn.ModuleList(
            torch.nn.Linear(cross_dim, hidden, bias=False)
            for hidden in cross_attention_hidden_sizes(unet) for _ in range(2)
        )
    lora_bytes = 2 * sum(
        LORA_RANK * (m.in_features + m.out_features) for name, m in unet.named_modules()
        if isinstance(m, torch.nn.Linear) and ".attn" in name and any(name.endswith(f".{t}") for t in LORA_TARGETS)
    )
    denoiser = [unet, built["image_projection"], ip_layers]
    if plan.fp8:
        for model in [*denoiser, built["controlnet"]]:
            store_in_fp8(model, torch.bfloat16)
    modules = {
        "unet": denoiser, "controlnet": [built["controlnet"]], "vae": [built["vae"]],
        "text_encoders": [built["text_encoder"], built["text_encoder_2"]],
        "image_encoder": [built["image_encoder"]], "safety_checker": [built["safety_checker"]],
    }
    return account(plan, modules, extra_resident=LORA_STYLES_ALLOWED * lora_bytes)

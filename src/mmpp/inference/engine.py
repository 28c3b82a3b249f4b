"""The engine: prepared faces in, styled portraits out, one batch of one style per call.

Blocking by design (it runs on the GPU worker's thread); the queue owns concurrency. Adapters are
loaded once at start and a batch only switches between them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from diffusers import SchedulerMixin, StableDiffusionXLControlNetPipeline
from PIL import Image

from mmpp.inference.compile import StyleSlot
from mmpp.inference.conditioning import PreparedFace, prepare
from mmpp.inference.device import place
from mmpp.inference.generation import PREVIEW_SIZE as PREVIEW_SIZE
from mmpp.inference.generation import GenerationCancelled as GenerationCancelled
from mmpp.inference.generation import GenerationRequest as GenerationRequest
from mmpp.inference.generation import GenerationResult as GenerationResult
from mmpp.inference.generation import StepProgress as StepProgress
from mmpp.inference.generation import random_seed as random_seed
from mmpp.inference.generation import to_png as to_png
from mmpp.inference.loader import (
    image_limits,
    load_catalog,
    load_pipeline,
    make_scheduler,
)
from mmpp.inference.memory_plan import Accounting, MemoryPlan, apply_plan, choose_plan, loads_on_cpu
from mmpp.inference.preprocess import ImageLimits, LocatedFace, locate_face
from mmpp.inference.prompt_cache import PromptCache, text_encoder_adapters
from mmpp.inference.safety import SafetyChecker, load_safety_checker
from mmpp.inference.speed import SpeedOptions, fast_adapter_name, speed_up, warm_up
from mmpp.inference.style_folder import Style
from mmpp.inference.styles import StyleCatalog
from mmpp.logs import log_event
from mmpp.settings import Settings

# The request types (re-exported above) live in `mmpp.inference.generation`, without torch: a bot that
# draws nothing imports them from there.

log = logging.getLogger(__name__)


class MixedStylesError(ValueError):
    """A batch must hold one style: the LoRA, scheduler and step count are shared by the call."""


StepCallback = Callable[[StepProgress], None]


class Engine:
    def __init__(
        self,
        pipe: StableDiffusionXLControlNetPipeline,
        catalog: StyleCatalog,
        *,
        limits: ImageLimits | None = None,
        resolution: int | None = None,
        slot: StyleSlot | None = None,
        preferred_batch_size: int | None = None,
        safety: SafetyChecker | None = None,
    ) -> None:
        self.pipe = pipe
        # With COMPILE on, styles live in one hotswapped LoRA slot instead of named adapters.
        self.slot = slot
        # The largest batch the queue should hand this engine: measured at warm-up; None = no preference.
        self.preferred_batch_size = preferred_batch_size
        self.catalog = catalog
        # None only when the operator turned the check off (SAFETY_CHECKER=none).
        self.safety = safety
        self.limits = limits or ImageLimits()
        self.resolution = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
        self.device = pipe.device
        base = pipe.scheduler
        self._schedulers: dict[str, SchedulerMixin] = {
            name: make_scheduler(style.definition.scheduler, base) for name, style in catalog.styles.items()
        }
        self._fast_schedulers: dict[str, SchedulerMixin] = {
            name: make_scheduler(style.definition.fast.scheduler, base)
            for name, style in catalog.styles.items() if style.definition.fast is not None
        }
        self._active: tuple[tuple[str, float], ...] | None = None
        # Rendered prompts encoded once (the text encoders may live on the CPU under a memory plan).
        self.prompts = PromptCache()
        # FAST_PRESET: requests that do not say draw with their style's fast preset, where it has one.
        self.fast_preset = False
        # The memory plan's accounting of this engine's own modules (None: placed by the caller).
        self.memory: Accounting | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        placement = place(settings.device, settings.dtype)  # a device not here stops before any load
        catalog = load_catalog(settings)
        placement.log()
        device, dtype = placement.device, placement.dtype
        plan, chosen_by = choose_plan(settings.memory_plan, settings.gpu_memory_gb, device)
        # A plan that keeps anything off the GPU loads into host memory and places each part itself.
        staging = torch.device("cpu") if loads_on_cpu(plan) else device
        pipe = load_pipeline(settings.sources, staging, dtype)
        safety = load_safety_checker(settings.sources.safety_checker, staging, dtype)
        options = fit_to_plan(SpeedOptions.from_settings(settings), plan)
        return cls.assemble(pipe, catalog, options, limits=image_limits(settings), safety=safety,
                            plan=plan, device=device, chosen_by=chosen_by)

    @classmethod
    def assemble(
        cls, pipe: StableDiffusionXLControlNetPipeline, catalog: StyleCatalog, options: SpeedOptions,
        *, limits: ImageLimits | None = None, safety: SafetyChecker | None = None,
        plan: MemoryPlan | None = None, device: torch.device | None = None, chosen_by: str = "",
    ) -> Engine:
        """A loaded pipeline made fast (inference/speed.py), with its styles, placed on `device` as
        `plan` says (inference/memory_plan.py; None: left where it is), warmed up if asked."""
        dtype = pipe.unet.dtype
        slot = speed_up(pipe, catalog, options)
        # After the LoRAs: fp8 storage must not reach them.
        memory = apply_plan(pipe, safety, plan, device or pipe.device, dtype, chosen_by=chosen_by) if plan else None
        engine = cls(pipe, catalog, limits=limits, safety=safety, slot=slot,
                     preferred_batch_size=options.max_batch_size)
        engine.memory = memory
        engine.fast_preset = options.fast_preset
        if options.warmup:
            engine.preferred_batch_size = warm_up(engine, options)
        return engine

    def prepare(self, data: bytes | LocatedFace) -> PreparedFace:
        """Decode, check and crop a selfie, then cut the person out of it (`mmpp.inference.conditioning`);
        raises an `ImageRejected` a member can act on."""
        located = data if isinstance(data, LocatedFace) else locate_face(data, self.limits)
        return prepare(located, self.resolution)

    def switch_style(self, style: Style, lora_scale: float | None = None, *, fast: bool = False) -> None:
        """Adapters, scales and scheduler for `style`; `fast` stacks its fast preset's LoRA (if any)."""
        lora = style.definition.lora
        scale = 0.0 if lora is None else (lora.scale if lora_scale is None else lora_scale)
        preset = style.definition.fast if fast else None
        self.pipe.scheduler = (self._fast_schedulers if preset else self._schedulers)[style.name]
        if self.slot is not None:
            self.slot.activate(style, scale, fast=preset is not None)
            return
        adapters = ([(style.name, scale)] if lora is not None else []) + (
            [(fast_adapter_name(style), preset.lora.scale)] if preset is not None else []
        )
        # A prompt style (without a fast preset) runs with every LoRA off, whichever style ran before it.
        if self._active != tuple(adapters):
            if not adapters:
                self.pipe.disable_lora()
            else:
                self.pipe.enable_lora()
                self.pipe.set_adapters([a for a, _ in adapters], adapter_weights=[w for _, w in adapters])
            self._active = tuple(adapters)
        self.pipe.set_ip_adapter_scale(style.definition.ip_adapter_scale)

    def generate(
        self, requests: Sequence[GenerationRequest], on_step: StepCallback | None = None
    ) -> list[GenerationResult]:
        """One diffusers call for the whole batch; results line up with `requests`.

        A cancelled job comes back with `cancelled=True`; if every job is cancelled the call stops
        within one step and raises `GenerationCancelled`.
        """
        if not requests:
            return []
        first = requests[0]
        if any(r.style != first.style or r.steps != first.steps or r.lora_scale != first.lora_scale
               or r.fast != first.fast or r.ip_adapter_scale != first.ip_adapter_scale for r in requests):
            raise MixedStylesError("a batch must share style, steps, LoRA scale, preset and IP-Adapter scale")
        style = self.catalog.get(first.style)
        definition = style.definition
        preset = definition.fast if (self.fast_preset if first.fast is None else first.fast) else None
        steps = first.steps or (preset.steps if preset else definition.steps)
        self.switch_style(style, first.lora_scale, fast=preset is not None)
        if first.ip_adapter_scale is not None:
            # This call only: the next `switch_style` sets the style's own scale again.
            (self.slot or self.pipe).set_ip_adapter_scale(first.ip_adapter_scale)

        started = time.perf_counter()
        guidance = preset.guidance if preset else definition.guidance
        embeds = self.prompts.encode(
            self.pipe, [definition.render_prompt(r.background, r.framing) for r in requests],
            definition.negative_prompt, cfg=guidance > 1 and self.pipe.unet.config.time_cond_proj_dim is None,
            adapters=text_encoder_adapters(self.pipe, self._active), device=self.device,
        )
        output = self.pipe(
            **embeds,
            image=[r.face.control for r in requests],
            ip_adapter_image=[[r.face.face for r in requests]],
            # With a slot the scale is folded into the ControlNet's weights (see inference/compile.py).
            controlnet_conditioning_scale=1.0 if self.slot is not None else definition.controlnet_scale,
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=self.resolution,
            width=self.resolution,
            generator=[torch.Generator(device="cpu").manual_seed(r.seed) for r in requests],
            callback_on_step_end=self._step_callback(requests, steps, on_step, self.safety),
            callback_on_step_end_tensor_inputs=["latents"],
            output_type="pil",
        )
        images = [definition.finish(image) for image in output.images]
        flagged = self._check_safety(requests, images)
        seconds = time.perf_counter() - started
        results = [
            GenerationResult(
                image=None if r.cancel.is_set() or bad else image,
                seed=r.seed,
                style=r.style,
                cancelled=r.cancel.is_set(),
                seconds=seconds,
                flagged=bad,
            )
            for r, image, bad in zip(requests, images, flagged, strict=True)
        ]
        log_event(
            log, logging.INFO, "batch generated",
            style=style.name, batch=len(requests), steps=steps, fast=preset is not None, seconds=round(seconds, 3),
            filtered=sum(flagged),
        )
        return results

    def _check_safety(self, requests: Sequence[GenerationRequest], images: Sequence[Image.Image]) -> list[bool]:
        """Which images the safety check refuses; cancelled jobs' images are never shown, so skipped."""
        if self.safety is None:
            return [False] * len(requests)
        wanted = [i for i, r in enumerate(requests) if not r.cancel.is_set()]
        verdicts = self.safety.check([images[i] for i in wanted], [requests[i].safety for i in wanted])
        flagged = [False] * len(requests)
        for index, verdict in zip(wanted, verdicts, strict=True):
            flagged[index] = verdict.flagged
            if verdict.flagged:
                r = requests[index]
                log_event(
                    log, logging.WARNING, "image filtered", style=r.style, seed=r.seed, check=r.safety,
                    nsfw=verdict.nsfw, special_care=verdict.special_care, margin=verdict.margin,
                )
        return flagged

    @staticmethod
    def _step_callback(
        requests: Sequence[GenerationRequest], total: int, on_step: StepCallback | None, safety: SafetyChecker | None
    ) -> Callable[..., dict[str, Any]]:
        levels = tuple(r.safety for r in requests)

        def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            active = tuple(not r.cancel.is_set() for r in requests)
            if not any(active):
                # Raising is the only way out that skips the remaining steps and the VAE decode.
                raise GenerationCancelled()
            if on_step is not None:
                on_step(StepProgress(step + 1, total, active, kwargs["latents"], safety, levels))
            return kwargs

        return callback


def fit_to_plan(options: SpeedOptions, plan: MemoryPlan) -> SpeedOptions:
    """The speed switches within what `plan` holds: never a batch larger than it fits, and no compile
    over fp8 storage (its per-layer casting hooks are not traced)."""
    fitted = replace(options, max_batch_size=min(options.max_batch_size, plan.max_batch or options.max_batch_size))
    if plan.fp8 and options.compile != "off":
        log_event(log, logging.WARNING, "compile off", reason=f"memory plan {plan.name} stores weights in fp8")
        fitted = replace(fitted, compile="off")
    return fitted

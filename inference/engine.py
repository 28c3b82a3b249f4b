"""The engine: prepared faces in, styled portraits out, one batch of one style per call.

Blocking by design (it runs on the GPU worker's thread); the queue owns concurrency. Adapters are
loaded once at start and a batch only switches between them.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import SchedulerMixin, StableDiffusionXLControlNetPipeline
from PIL import Image

from inference.compile import StyleSlot
from inference.generation import GenerationRequest as GenerationRequest  # re-exported for callers
from inference.generation import GenerationResult as GenerationResult
from inference.generation import to_png as to_png
from inference.loader import (
    image_limits,
    load_catalog,
    load_pipeline,
    make_scheduler,
    resolve_device,
    resolve_dtype,
)
from inference.preprocess import ImageLimits, LocatedFace, PreparedFace, locate_face
from inference.preview import latents_to_preview
from inference.safety import SafetyChecker, SafetyLevel, load_safety_checker
from inference.speed import SpeedOptions, fast_adapter_name, speed_up, warm_up
from inference.styles import Style, StyleCatalog
from mmpp.errors import UserFacingError
from mmpp.logs import log_event
from mmpp.settings import Settings

log = logging.getLogger(__name__)

PREVIEW_SIZE = 256


def random_seed() -> int:
    """A fresh seed: 31 bits, so it reads the same in every tool that shows or takes one."""
    return secrets.randbelow(2**31)


class GenerationCancelled(UserFacingError):
    code = "cancelled"


class MixedStylesError(ValueError):
    """A batch must hold one style: the LoRA, scheduler and step count are shared by the call."""


@dataclass
class StepProgress:
    """Handed to `on_step` after each denoising step; previews are made only when asked for."""

    step: int
    total: int
    active: tuple[bool, ...]
    _latents: torch.Tensor
    # A preview is posted like the portrait, so it passes the same check (None: the check is off).
    _safety: SafetyChecker | None = None
    _levels: tuple[SafetyLevel, ...] = ()

    def preview(self, index: int, size: int = PREVIEW_SIZE) -> Image.Image | None:
        """The job's picture so far, or None when the safety check refuses it."""
        image = latents_to_preview(self._latents[index : index + 1], size)[0]
        if self._safety is not None and self._safety.check([image], [self._levels[index]])[0].flagged:
            return None
        return image


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
        # FAST_PRESET: requests that do not say draw with their style's fast preset, where it has one.
        self.fast_preset = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        catalog = load_catalog(settings)
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device)
        pipe = load_pipeline(settings.sources, device, dtype)
        safety = load_safety_checker(settings.sources.safety_checker, device, dtype)
        options = SpeedOptions.from_settings(settings)
        return cls.assemble(pipe, catalog, options, limits=image_limits(settings), safety=safety)

    @classmethod
    def assemble(
        cls, pipe: StableDiffusionXLControlNetPipeline, catalog: StyleCatalog, options: SpeedOptions,
        *, limits: ImageLimits | None = None, safety: SafetyChecker | None = None,
    ) -> Engine:
        """A loaded pipeline made fast (inference/speed.py), with its styles, warmed up if asked."""
        slot = speed_up(pipe, catalog, options)
        engine = cls(pipe, catalog, limits=limits, safety=safety, slot=slot,
                     preferred_batch_size=options.max_batch_size)
        engine.fast_preset = options.fast_preset
        if options.warmup:
            engine.preferred_batch_size = warm_up(engine, options)
        return engine

    def prepare(self, data: bytes | LocatedFace) -> PreparedFace:
        """Decode, check and crop a selfie; raises an `ImageRejected` a member can act on."""
        located = data if isinstance(data, LocatedFace) else locate_face(data, self.limits)
        return located.prepare(self.resolution)

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
               or r.fast != first.fast for r in requests):
            raise MixedStylesError("a batch must share style, steps, LoRA scale and preset")
        style = self.catalog.get(first.style)
        definition = style.definition
        preset = definition.fast if (self.fast_preset if first.fast is None else first.fast) else None
        steps = first.steps or (preset.steps if preset else definition.steps)
        self.switch_style(style, first.lora_scale, fast=preset is not None)

        started = time.perf_counter()
        output = self.pipe(
            prompt=[definition.render_prompt(r.background, r.framing) for r in requests],
            negative_prompt=[definition.negative_prompt] * len(requests),
            image=[r.face.control for r in requests],
            ip_adapter_image=[[r.face.face for r in requests]],
            # With a slot the scale is folded into the ControlNet's weights (see inference/compile.py).
            controlnet_conditioning_scale=1.0 if self.slot is not None else definition.controlnet_scale,
            num_inference_steps=steps,
            guidance_scale=preset.guidance if preset else definition.guidance,
            height=self.resolution,
            width=self.resolution,
            generator=[torch.Generator(device="cpu").manual_seed(r.seed) for r in requests],
            callback_on_step_end=self._step_callback(requests, steps, on_step, self.safety),
            callback_on_step_end_tensor_inputs=["latents"],
            output_type="pil",
        )
        flagged = self._check_safety(requests, output.images)
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
            for r, image, bad in zip(requests, output.images, flagged, strict=True)
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
                raise GenerationCancelled("Cancelled.")
            if on_step is not None:
                on_step(StepProgress(step + 1, total, active, kwargs["latents"], safety, levels))
            return kwargs

        return callback

"""The speed switches, each a setting, and the warm-up that spends compile time before members arrive.

    DTYPE             bf16 on a GPU (`auto`, see inference/device.py)
    ATTENTION         sdpa (PyTorch's fused scaled-dot-product attention) | eager (diffusers' matmul one)
    CHANNELS_LAST     NHWC memory layout for the UNet, ControlNet and VAE convolutions
    FUSE_QKV          one matmul for q, k and v: ControlNet and VAE only (see `fuse_qkv`)
    COMPILE           off | default | max-autotune: torch.compile of UNet, ControlNet, VAE decoder
    WARMUP            draw throwaway images at start: compiles every batch shape, times each batch size
    FAST_PRESET       on: styles with a `fast` preset draw with it (a few-step LoRA stacked on theirs)

The warm-up also measures throughput at each batch size up to MAX_BATCH_SIZE and keeps the size
with the best images per second as `Engine.preferred_batch_size`, which the queue uses as its cap.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import StableDiffusionXLControlNetPipeline
from diffusers.models.attention_processor import (
    Attention,
    AttnProcessor,
    AttnProcessor2_0,
    FusedAttnProcessor2_0,
    IPAdapterAttnProcessor,
    IPAdapterAttnProcessor2_0,
)
from PIL import Image

from mmpp.inference.compile import CompileMode, StyleSlot, compile_pipeline, fast_lora_path, shapes_to_warm
from mmpp.inference.conditioning import FACE_SIDE, NEUTRAL_GREY, PreparedFace
from mmpp.inference.faces import Box
from mmpp.inference.generation import Drawer, GenerationRequest
from mmpp.inference.style_folder import Style
from mmpp.inference.styles import StyleCatalog
from mmpp.logs import log_event
from mmpp.settings import Settings

log = logging.getLogger(__name__)

AttentionKind = Literal["sdpa", "eager"]


@dataclass(frozen=True)
class SpeedOptions:
    attention: AttentionKind = "sdpa"
    channels_last: bool = False
    fuse_qkv: bool = False
    compile: CompileMode = "off"
    warmup: bool = False
    fast_preset: bool = False
    max_batch_size: int = 1
    # Steps per warm-up call; few are enough to compile and to rank batch sizes.
    warmup_steps: int = 2
    compile_backend: str = "inductor"

    @classmethod
    def from_settings(cls, settings: Settings) -> SpeedOptions:
        return cls(
            attention=settings.attention,
            channels_last=settings.channels_last,
            fuse_qkv=settings.fuse_qkv,
            compile=settings.compile,
            warmup=settings.warmup or settings.compile != "off",
            fast_preset=settings.fast_preset,
            max_batch_size=settings.max_batch_size,
        )


def apply_layout_switches(pipe: StableDiffusionXLControlNetPipeline, options: SpeedOptions) -> None:
    """Attention kernel, memory layout and QKV fusion: everything that must happen before compiling."""
    if options.attention == "eager":
        use_eager_attention(pipe)
    if options.channels_last:
        for model in (pipe.unet, pipe.controlnet, pipe.vae):
            model.to(memory_format=torch.channels_last)
    if options.fuse_qkv:
        fuse_qkv(pipe)


def use_eager_attention(pipe: StableDiffusionXLControlNetPipeline) -> None:
    """diffusers' pre-SDPA attention everywhere, IP-Adapter processors kept (with their weights)."""
    for model in (pipe.unet, pipe.controlnet, pipe.vae):
        processors = {}
        for name, processor in model.attn_processors.items():
            if isinstance(processor, IPAdapterAttnProcessor2_0):
                eager = IPAdapterAttnProcessor(
                    hidden_size=processor.hidden_size, cross_attention_dim=processor.cross_attention_dim,
                    num_tokens=processor.num_tokens, scale=processor.scale,
                )
                eager.load_state_dict(processor.state_dict())
                processors[name] = eager.to(device=pipe.device, dtype=pipe.unet.dtype)
            else:
                processors[name] = AttnProcessor()
        model.set_attn_processor(processors)


def fuse_qkv(pipe: StableDiffusionXLControlNetPipeline) -> None:
    """Fuse q/k/v projections in the ControlNet and the VAE, not in the UNet.

    diffusers' `fuse_qkv_projections` on the UNet swaps every processor for `FusedAttnProcessor2_0`:
    the IP-Adapter processors would be dropped (the face's look silently gone) and the fused
    `to_qkv` bypasses the LoRA layers that sit on `to_q/to_k/to_v` (the style gone). The ControlNet
    carries neither, and is most of the rest of the per-step work.
    """
    for model in (pipe.controlnet, pipe.vae):
        for module in model.modules():
            if isinstance(module, Attention) and isinstance(module.processor, AttnProcessor2_0):
                module.fuse_projections()
                module.set_processor(FusedAttnProcessor2_0())


def speed_up(
    pipe: StableDiffusionXLControlNetPipeline, catalog: StyleCatalog, options: SpeedOptions
) -> StyleSlot | None:
    """Apply the switches and load the styles; with COMPILE on, into one hotswap slot, then compile.

    Returns the slot (None when styles are named adapters switched with `set_adapters`).
    """
    from mmpp.inference.loader import load_style_adapters

    apply_layout_switches(pipe, options)
    if options.compile == "off":
        load_style_adapters(pipe, catalog)
        load_fast_adapters(pipe, catalog)
        return None
    slot = StyleSlot.load(pipe, catalog)
    # Two CFG modes x every batch size, plus headroom for the VAE decoder's own shapes.
    compile_pipeline(pipe, options.compile, max_graphs=4 * options.max_batch_size + 4, backend=options.compile_backend)
    return slot


def fast_adapter_name(style: Style) -> str:
    """One named adapter per fast-preset LoRA file, shared by every style that names it."""
    return "fast-" + hashlib.sha1(fast_lora_path(style).encode()).hexdigest()[:12]


def load_fast_adapters(pipe: StableDiffusionXLControlNetPipeline, catalog: StyleCatalog) -> None:
    """Each fast preset's few-step LoRA as a named adapter, stacked on the style's at switch time."""
    from mmpp.inference.loader import ModelUnavailable
    from mmpp.inference.weights import lora_source

    for style in list(catalog.styles.values()):
        preset = style.definition.fast
        if preset is None or fast_adapter_name(style) in pipe.unet.peft_config:
            continue
        try:
            source, weight_name = lora_source(style, "fast.lora", fast_lora_path(style), preset.lora.weight_name)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                # use_safetensors: no quiet fall-back to a pickled .bin when the safetensors file is missing.
                pipe.load_lora_weights(source, weight_name=weight_name, adapter_name=fast_adapter_name(style),
                                       use_safetensors=True)
        except Exception as exc:  # as for a style's own LoRA: only this style goes
            reason = f"{style.folder}: its fast preset's LoRA could not be loaded: {str(exc).strip()[:200]}"
            catalog.reject(style.name, reason)
            log_event(log, logging.ERROR, "style rejected", reason=reason)
    if not catalog.styles:
        raise ModelUnavailable("No style could be loaded: " + "; ".join(catalog.errors))


def warm_face(resolution: int) -> PreparedFace:
    """A grey face and an empty edge map: warm-up needs shapes, not a person."""
    face = Image.new("RGB", (FACE_SIDE, FACE_SIDE), (NEUTRAL_GREY,) * 3)
    control = Image.new("L", (resolution, resolution), 0)
    return PreparedFace(face=face, control=control, box=Box(0, 0, resolution, resolution),
                        source_size=(resolution, resolution))


def warm_up(engine: Drawer, options: SpeedOptions) -> int:
    """Compile every shape the engine will meet and return the batch size with the best throughput.

    One call per (batch size, CFG on/off) that some style or fast preset uses; the quality shapes
    are timed on a second call, after compiling. A member never waits for compilation, and the queue
    batches at the size this device draws fastest per image.
    """
    started = time.perf_counter()
    face = warm_face(engine.resolution)
    styles = list(engine.catalog.styles.values())
    quality = {(s.definition.guidance > 1.0): (s, False) for s in styles}
    fast = {(s.definition.fast.guidance > 1.0): (s, True) for s in styles if s.definition.fast is not None}
    per_image: dict[int, float] = {}
    for batch, cfg in shapes_to_warm(options.max_batch_size, {*quality, *fast}):
        style, use_fast = quality.get(cfg) or fast[cfg]
        requests = [
            GenerationRequest(face=face, style=style.name, seed=i, steps=options.warmup_steps, fast=use_fast)
            for i in range(batch)
        ]
        engine.generate(requests)  # compiles this shape
        if not use_fast:
            per_image[batch] = _timed(lambda r=requests: engine.generate(r)) / batch
    for style in styles:  # each style's first switch, so no member pays for a first hotswap either
        if style.definition.fast is not None:
            engine.switch_style(style, fast=True)
        engine.switch_style(style)
    best = min(per_image, key=lambda b: per_image[b]) if per_image else 1
    log_event(
        log, logging.INFO, "engine warmed up", seconds=round(time.perf_counter() - started, 2),
        batch=best, **{f"s_per_image_b{b}": round(s, 4) for b, s in per_image.items()},
    )
    return best


def _timed(fn: object) -> float:
    synchronize()
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    synchronize()
    return time.perf_counter() - started


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()

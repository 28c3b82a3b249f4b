"""Load SDXL + ControlNet + IP-Adapter + every style LoRA, through diffusers' own loading paths.

The same calls load the hub models in production and the tiny model in tests.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    SchedulerMixin,
    StableDiffusionXLControlNetPipeline,
    TCDScheduler,
    UniPCMultistepScheduler,
)
from diffusers.models.embeddings import ImageProjection
from transformers import CLIPVisionModelWithProjection

# What needs no weights (and no torch) lives in `model_files`, where a bot that draws nothing reads it.
from mmpp.inference.model_files import ModelUnavailable as ModelUnavailable
from mmpp.inference.model_files import image_limits as image_limits
from mmpp.inference.model_files import load_catalog as load_catalog
from mmpp.inference.model_files import local_or_hub as _local_or_hub
from mmpp.inference.style_folder import WEIGHT_SUFFIX, Style
from mmpp.inference.styles import StyleCatalog
from mmpp.logs import log_event
from mmpp.model_sources import ModelSources

log = logging.getLogger(__name__)


class PortraitPipeline(StableDiffusionXLControlNetPipeline):
    """SDXL + ControlNet + IP-Adapter where, in a batch, IP-Adapter image i belongs to prompt i alone.

    diffusers reads a list of IP-Adapter images as several images for *every* prompt, so in a batch of
    two members each portrait would attend to both faces (the Plus Resampler's 16 tokens per face make
    that plainly visible). Here each prompt gets its own face's tokens and nobody else's.
    """

    def prepare_ip_adapter_image_embeds(
        self,
        ip_adapter_image: object,
        ip_adapter_image_embeds: list[torch.Tensor] | None,
        device: torch.device,
        num_images_per_prompt: int,
        do_classifier_free_guidance: bool,
    ) -> list[torch.Tensor]:
        if ip_adapter_image_embeds is not None or ip_adapter_image is None:
            return super().prepare_ip_adapter_image_embeds(
                ip_adapter_image, ip_adapter_image_embeds, device, num_images_per_prompt, do_classifier_free_guidance
            )
        adapters = ip_adapter_image if isinstance(ip_adapter_image, list) else [ip_adapter_image]
        embeds = []
        for images, layer in zip(adapters, self.unet.encoder_hid_proj.image_projection_layers, strict=True):
            images = images if isinstance(images, list) else [images]
            # The Plus Resampler reads the encoder's penultimate hidden states, the plain one its embedding.
            positive, negative = self.encode_image(images, device, 1, not isinstance(layer, ImageProjection))
            if len(images) == 1 and num_images_per_prompt > 1:
                positive = positive.repeat_interleave(num_images_per_prompt, dim=0)
                negative = negative.repeat_interleave(num_images_per_prompt, dim=0)
            elif len(images) != num_images_per_prompt:
                raise ValueError(f"{len(images)} IP-Adapter images for {num_images_per_prompt} prompts")
            # (prompts, 1 image, ...): one face per prompt; unconditional rows first, as the prompts are.
            positive, negative = positive[:, None], negative[:, None]
            embeds.append((torch.cat([negative, positive]) if do_classifier_free_guidance else positive).to(device))
        return embeds


def make_scheduler(name: str, base: SchedulerMixin) -> SchedulerMixin:
    config = base.config
    match name:
        case "euler":
            return EulerDiscreteScheduler.from_config(config)
        case "euler_a":
            return EulerAncestralDiscreteScheduler.from_config(config)
        case "dpmpp_2m":
            return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++")
        case "dpmpp_2m_karras":
            return DPMSolverMultistepScheduler.from_config(
                config, algorithm_type="dpmsolver++", use_karras_sigmas=True
            )
        case "ddim":
            return DDIMScheduler.from_config(config)
        case "unipc":
            return UniPCMultistepScheduler.from_config(config)
        # The few-step LoRAs' own (a style's fast preset): LCM, TCD, and Lightning/Hyper-SD's trailing Euler.
        case "lcm":
            return LCMScheduler.from_config(config)
        case "tcd":
            return TCDScheduler.from_config(config)
        case "euler_trailing":
            return EulerDiscreteScheduler.from_config(config, timestep_spacing="trailing")
    raise ValueError(f"unknown scheduler {name!r}")


def quiet_libraries() -> None:
    """Our own progress and log lines replace the libraries' per-shard bars and advice."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def load_pipeline(sources: ModelSources, device: torch.device, dtype: torch.dtype) -> PortraitPipeline:
    """Every model, safetensors only: a pickled `.bin` runs code when loaded, so none is ever read."""
    from mmpp.inference.download import ensure_models

    quiet_libraries()
    if not sources.ip_adapter_weight_name.endswith(WEIGHT_SUFFIX):
        raise ModelUnavailable(
            f"IP_ADAPTER_WEIGHT_NAME={sources.ip_adapter_weight_name} is not a .safetensors file; "
            "other weight formats can run code when loaded, so only safetensors are read."
        )
    ensure_models(sources)
    started = time.perf_counter()
    try:
        controlnet = ControlNetModel.from_pretrained(
            _local_or_hub(sources.controlnet), dtype=dtype, use_safetensors=True
        )
        extra = {}
        if sources.vae:
            extra["vae"] = AutoencoderKL.from_pretrained(_local_or_hub(sources.vae), dtype=dtype, use_safetensors=True)
        pipe = PortraitPipeline.from_pretrained(
            _local_or_hub(sources.base_model),
            controlnet=controlnet,
            dtype=dtype,
            add_watermarker=False,
            use_safetensors=True,
            **extra,
        )
        # Loaded here rather than by load_ip_adapter so the encoder may live in another repo or folder.
        encoder_kwargs = {"subfolder": sources.image_encoder_subfolder} if sources.image_encoder_subfolder else {}
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            _local_or_hub(sources.image_encoder), dtype=dtype, use_safetensors=True, **encoder_kwargs
        )
        pipe.register_modules(image_encoder=image_encoder)
        pipe.load_ip_adapter(
            _local_or_hub(sources.ip_adapter),
            subfolder=sources.ip_adapter_subfolder or None,
            weight_name=sources.ip_adapter_weight_name,
            image_encoder_folder=None,
        )
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"Could not load the models: {_first_line(exc)}") from exc
    pipe.set_progress_bar_config(disable=True)
    try:
        pipe.to(device)
    except (RuntimeError, AssertionError) as exc:  # torch says "not compiled with CUDA" with an assert
        raise ModelUnavailable(f"Cannot use DEVICE={device}: {_first_line(exc)}") from exc
    log_event(
        log, logging.INFO, "pipeline loaded",
        device=str(device), dtype=str(dtype).removeprefix("torch."),
        seconds=round(time.perf_counter() - started, 2),
    )
    return pipe


def load_style_adapters(pipe: StableDiffusionXLControlNetPipeline, catalog: StyleCatalog) -> None:
    """Every style's LoRA, once, as a named adapter; jobs switch between them with set_adapters.
    A prompt style has none and runs with every LoRA off.

    A LoRA that does not load takes only its own style out of the catalog (with the reason in
    `catalog.errors`), like a broken definition does; with no style left the start fails.
    """
    for style in list(catalog.styles.values()):
        if style.definition.lora is None:
            continue
        try:
            _load_adapter(pipe, style)
        except Exception as exc:  # a corrupt file fails in safetensors, peft or diffusers alike
            with contextlib.suppress(Exception):
                pipe.delete_adapters(style.name)
            reason = f"{style.folder}: its LoRA could not be loaded: {_first_line(exc)}"
            catalog.reject(style.name, reason)
            log_event(log, logging.ERROR, "style rejected", reason=reason)
    if not catalog.styles:
        raise ModelUnavailable("No style's LoRA could be loaded: " + "; ".join(catalog.errors))


def _load_adapter(pipe: StableDiffusionXLControlNetPipeline, style: Style) -> None:
    assert style.definition.lora is not None and style.lora_path is not None
    from mmpp.inference.weights import lora_source

    source, weight_name = lora_source(style, "lora", style.lora_path, style.definition.lora.weight_name)
    with warnings.catch_warnings():
        # peft warns on every adapter after the first; several named adapters is the point here.
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        # use_safetensors: no quiet fall-back to a pickled .bin when the safetensors file is missing.
        pipe.load_lora_weights(source, weight_name=weight_name, adapter_name=style.name, use_safetensors=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

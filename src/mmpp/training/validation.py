"""Validation images every N steps, drawn by the diffusers SDXL pipeline with the adapters being trained."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

from mmpp.training.models import Components


def validation_prompt(prompt: str, trigger: str) -> str:
    """As at inference (StyleDefinition.render_prompt), the trigger word leads when the prompt lacks it."""
    return prompt if trigger in prompt else f"{trigger}, {prompt}"


@torch.no_grad()
def render_validation(
    parts: Components,
    *,
    prompt: str,
    count: int,
    resolution: int,
    steps: int,
    guidance: float,
    seed: int,
    device: torch.device,
    folder: Path,
    step: int,
    autocast: contextlib.AbstractContextManager | None = None,
) -> list[Path]:
    # Euler is the styles' default scheduler, so these look like what the bot will draw.
    scheduler = EulerDiscreteScheduler.from_config(parts.noise_scheduler.config)
    pipe = StableDiffusionXLPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoders[0],
        text_encoder_2=parts.text_encoders[1],
        tokenizer=parts.tokenizers[0],
        tokenizer_2=parts.tokenizers[1],
        unet=parts.unet,
        scheduler=scheduler,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    modules = (parts.unet, *parts.text_encoders)
    was_training = [m.training for m in modules]
    for module in modules:
        module.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    try:
        with autocast or contextlib.nullcontext():
            images = pipe(
                prompt=[prompt] * count,
                num_inference_steps=steps,
                guidance_scale=guidance,
                height=resolution,
                width=resolution,
                generator=generator,
            ).images
    finally:
        for module, training in zip(modules, was_training, strict=True):
            module.train(training)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"step-{step:06d}-{i}.png"
        image.save(path)
        paths.append(path)
    return paths

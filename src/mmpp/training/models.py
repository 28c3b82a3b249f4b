"""The SDXL parts training needs, loaded the way diffusers' DreamBooth script loads them, plus LoRA."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from peft import LoraConfig
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from mmpp.inference.loader import ModelUnavailable

UNET_LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


@dataclass
class Components:
    tokenizers: tuple[CLIPTokenizer, CLIPTokenizer]
    text_encoders: tuple[CLIPTextModel, CLIPTextModelWithProjection]
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    noise_scheduler: DDPMScheduler
    # The SDXL VAE overflows in fp16; only a VAE chosen for it (fp16-fix) may run in half precision.
    vae_half_safe: bool

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def native_resolution(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def resolution_multiple(self) -> int:
        """Latents must halve cleanly at every UNet down block."""
        return self.vae_scale_factor * 2 ** (len(self.unet.config.down_block_types) - 1)


def load_components(base_model: str, vae: str | None = None) -> Components:
    try:
        tokenizers = (
            CLIPTokenizer.from_pretrained(base_model, subfolder="tokenizer"),
            CLIPTokenizer.from_pretrained(base_model, subfolder="tokenizer_2"),
        )
        text_encoders = (
            CLIPTextModel.from_pretrained(base_model, subfolder="text_encoder", use_safetensors=True),
            CLIPTextModelWithProjection.from_pretrained(
                base_model, subfolder="text_encoder_2", use_safetensors=True
            ),
        )
        # use_safetensors everywhere: a pickled .bin runs code when loaded, so none is read.
        vae_model = (
            AutoencoderKL.from_pretrained(vae, use_safetensors=True) if vae
            else AutoencoderKL.from_pretrained(base_model, subfolder="vae", use_safetensors=True)
        )
        unet = UNet2DConditionModel.from_pretrained(base_model, subfolder="unet", use_safetensors=True)
        scheduler = DDPMScheduler.from_pretrained(base_model, subfolder="scheduler")
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailable(f"Could not load the base model {base_model}: {first}") from exc
    for model in (*text_encoders, vae_model, unet):
        model.requires_grad_(False)
    return Components(tokenizers, text_encoders, vae_model, unet, scheduler, vae_half_safe=vae is not None)


def unet_lora_config(rank: int, alpha: float, dropout: float, use_dora: bool = False) -> LoraConfig:
    return LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, init_lora_weights="gaussian",
        target_modules=UNET_LORA_TARGETS, use_dora=use_dora,
    )


def text_lora_config(rank: int, alpha: float, dropout: float, use_dora: bool = False) -> LoraConfig:
    return LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, init_lora_weights="gaussian",
        target_modules=TEXT_LORA_TARGETS, use_dora=use_dora,
    )


def tokenize(tokenizers: tuple[CLIPTokenizer, CLIPTokenizer], captions: list[str]) -> tuple[torch.Tensor, ...]:
    return tuple(
        tokenizer(
            captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).input_ids
        for tokenizer in tokenizers
    )


def encode_prompt(
    text_encoders: tuple[torch.nn.Module, torch.nn.Module], input_ids: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly what StableDiffusionXLPipeline.encode_prompt computes: penultimate hidden states of both
    encoders side by side, and the second encoder's pooled projection."""
    hidden: list[torch.Tensor] = []
    pooled: torch.Tensor | None = None
    for encoder, ids in zip(text_encoders, input_ids, strict=True):
        out = encoder(ids.to(next(encoder.parameters()).device), output_hidden_states=True)
        if out[0].ndim == 2:
            pooled = out[0]
        hidden.append(out.hidden_states[-2])
    if pooled is None:
        raise ValueError("the second text encoder returned no pooled embedding")
    return torch.cat(hidden, dim=-1), pooled

"""From trained adapters to a style folder the engine loads with no conversion.

The LoRA is written by `StableDiffusionXLPipeline.save_lora_weights` (the diffusers safetensors
layout, `unet.` / `text_encoder.` / `text_encoder_2.` keys plus the adapter config as metadata, so
an alpha other than the rank survives), and `style.json` by `mmpp.inference.style_folder.write_style`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from diffusers import StableDiffusionXLPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft.utils import get_peft_model_state_dict

from mmpp.inference.style_definition import LoraSource, StyleDefinition
from mmpp.inference.style_folder import write_style

LORA_FILE = "lora.safetensors"
SAMPLE_FILE = "sample.png"


def _layers(model: torch.nn.Module, adapter: str) -> dict[str, torch.Tensor]:
    state = get_peft_model_state_dict(model, adapter_name=adapter)
    layers = convert_state_dict_to_diffusers(state)
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in layers.items()}


def _metadata(model: torch.nn.Module, adapter: str) -> dict:
    return model.peft_config[adapter].to_dict()


def save_lora(
    directory: Path,
    unet: torch.nn.Module,
    text_encoders: tuple[torch.nn.Module, torch.nn.Module] | None = None,
    *,
    weight_name: str = LORA_FILE,
    adapter: str = "default",
) -> Path:
    """UNet (and, when trained, both text encoders') LoRA layers in one safetensors file."""
    kwargs: dict[str, object] = {
        "unet_lora_layers": _layers(unet, adapter),
        "unet_lora_adapter_metadata": _metadata(unet, adapter),
    }
    if text_encoders is not None:
        for key, encoder in zip(("text_encoder", "text_encoder_2"), text_encoders, strict=True):
            kwargs[f"{key}_lora_layers"] = _layers(encoder, adapter)
            kwargs[f"{key}_lora_adapter_metadata"] = _metadata(encoder, adapter)
    directory.mkdir(parents=True, exist_ok=True)
    StableDiffusionXLPipeline.save_lora_weights(save_directory=str(directory), weight_name=weight_name, **kwargs)
    return directory / weight_name


def write_trained_style(
    folder: Path,
    *,
    name: str,
    trigger: str,
    description: str = "",
    display_name: str = "",
    sample: Path | None = None,
) -> Path:
    """`style.json` goes last: the catalog skips a folder without one, so a half-written style never loads."""
    sample_name = None
    if sample is not None and sample.is_file():
        if sample.resolve() != (folder / SAMPLE_FILE).resolve():
            shutil.copyfile(sample, folder / SAMPLE_FILE)
        sample_name = SAMPLE_FILE
    definition = StyleDefinition(
        name=name,
        display_name=display_name,
        description=description or f"Trained with `mmpp train`; trigger: {trigger}.",
        trigger_words=[trigger],
        lora=LoraSource(source=LORA_FILE),
        sample_image=sample_name,
    )
    return write_style(folder, definition)

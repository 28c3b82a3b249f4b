"""Random UNet LoRAs at production rank: as state dicts, as files, and as a whole style folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from mmpp.inference.testing.random_configs import LORA_RANK, LORA_TARGETS


def random_lora_state_dict(
    unet: UNet2DConditionModel, *, rank: int = LORA_RANK, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A random UNet LoRA on every attention projection, in the PEFT layout `load_lora_weights` reads.

    Built from the module shapes directly, without attaching an adapter to a 2.6 B-parameter UNet.
    B is small but not zero, so the style visibly changes the picture, as a trained one does.
    """
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in unet.named_modules():
        if not isinstance(module, torch.nn.Linear) or ".attn" not in name:
            continue
        if not any(name.endswith(f".{target}") for target in LORA_TARGETS):
            continue
        down = torch.randn(rank, module.in_features, generator=generator) / module.in_features**0.5
        up = torch.randn(module.out_features, rank, generator=generator) * (0.2 / rank**0.5)
        tensors[f"unet.{name}.lora_A.weight"] = down.to(unet.dtype)
        tensors[f"unet.{name}.lora_B.weight"] = up.to(unet.dtype)
    return tensors


def write_lora_file(path: Path, unet: UNet2DConditionModel, *, rank: int = LORA_RANK, seed: int = 0) -> Path:
    """A random LoRA as a safetensors file (a style's, or a stand-in for a few-step LCM/Lightning one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    layers = random_lora_state_dict(unet, rank=rank, seed=seed)
    save_file({k: v.contiguous().cpu() for k, v in layers.items()}, str(path))
    return path


def write_lora_style(
    model_dir: Path, name: str, unet: UNet2DConditionModel, *, rank: int = LORA_RANK, seed: int = 1,
    **overrides: Any,
) -> Path:
    """One style folder (`style.json` + a random LoRA of `rank`) under `model_dir/styles/`."""
    from mmpp.inference.style_definition import LoraSource, StyleDefinition
    from mmpp.inference.style_folder import write_style

    folder = Path(model_dir) / "styles" / name
    write_lora_file(folder / "lora.safetensors", unet, rank=rank, seed=seed)
    fields: dict[str, Any] = {
        "name": name,
        "description": f"Random weights, rank-{rank} LoRA ({name}); for benchmarks.",
        "trigger_words": [f"{name.replace('-', '')} style"],
        "lora": LoraSource(source="lora.safetensors", scale=1.0),
        "steps": 30,
        "guidance": 6.0,
        "scheduler": "euler",
    }
    fields.update(overrides)
    write_style(folder, StyleDefinition.model_validate(fields))
    return folder

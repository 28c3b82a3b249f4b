"""What every random-weight builder shares: the configs of one model (`RandomModelSpec`; `FULL` is
production's) and the dtype the weights are made in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from mmpp.inference.testing.random_configs import (
    CONTROLNET_CANNY_SDXL,
    IMAGE_ENCODER_VIT_H,
    LORA_RANK,
    PLUS_FACE_RESAMPLER,
    SAFETY_CHECKER_PROJECTION_DIM,
    SAFETY_CHECKER_VISION,
    SDXL_TEXT_ENCODER,
    SDXL_TEXT_ENCODER_2,
    SDXL_UNET,
    SDXL_VAE,
)


@dataclass(frozen=True)
class RandomModelSpec:
    """Every config of one random model; `FULL` is production's, tests shrink a copy of it."""

    unet: dict[str, Any] = field(default_factory=lambda: dict(SDXL_UNET))
    controlnet: dict[str, Any] = field(default_factory=lambda: dict(CONTROLNET_CANNY_SDXL))
    vae: dict[str, Any] = field(default_factory=lambda: dict(SDXL_VAE))
    text_encoder: dict[str, Any] = field(default_factory=lambda: dict(SDXL_TEXT_ENCODER))
    text_encoder_2: dict[str, Any] = field(default_factory=lambda: dict(SDXL_TEXT_ENCODER_2))
    image_encoder: dict[str, Any] = field(default_factory=lambda: dict(IMAGE_ENCODER_VIT_H))
    resampler: dict[str, int] = field(default_factory=lambda: dict(PLUS_FACE_RESAMPLER))
    safety_checker: dict[str, Any] = field(default_factory=lambda: dict(SAFETY_CHECKER_VISION))
    safety_projection_dim: int = SAFETY_CHECKER_PROJECTION_DIM
    lora_rank: int = LORA_RANK

    def with_changes(self, **changes: Any) -> RandomModelSpec:
        return replace(self, **changes)


FULL = RandomModelSpec()


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build straight in the target dtype: a 2.6 B-parameter UNet made in fp32 first needs 10 GB."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)

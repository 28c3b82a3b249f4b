"""A cheap look at the latents mid-generation: a linear latent-to-RGB map, no VAE decode.

The factors are a least-squares fit of SDXL's VAE decoder to a 4x3 matrix (the values widely used
by ComfyUI and others); for any other VAE the picture is only a rough impression, which is all a
progress preview needs.
"""

from __future__ import annotations

import torch
from PIL import Image

SDXL_LATENT_RGB = torch.tensor(
    [
        [0.3651, 0.4232, 0.4341],
        [-0.2533, -0.0042, 0.1068],
        [0.1076, 0.1111, -0.0362],
        [-0.3165, -0.2492, -0.2188],
    ]
)
SDXL_LATENT_RGB_BIAS = torch.tensor([0.1084, -0.0175, -0.0011])


def latents_to_preview(latents: torch.Tensor, size: int | None = None) -> list[Image.Image]:
    """(B, 4, h, w) latents to B small RGB images, optionally resized to `size` pixels square."""
    factors = SDXL_LATENT_RGB.to(latents.device, torch.float32)
    bias = SDXL_LATENT_RGB_BIAS.to(latents.device, torch.float32)
    rgb = torch.einsum("bchw,cr->bhwr", latents.detach().float(), factors) + bias
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    images = [Image.fromarray(p) for p in pixels]
    if size:
        images = [im.resize((size, size), Image.Resampling.BILINEAR) for im in images]
    return images

"""Encode once, train many times: VAE latents per image and text embeddings per caption.

Latents are kept as the VAE's distribution (mean and log-variance), not one sample, so every step
still draws fresh latent noise as an uncached run would. Both caches live in CPU memory and move to
the device a batch at a time.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch.utils.data import DataLoader, Subset

from mmpp.training.models import encode_prompt, tokenize
from mmpp.training.pixels import ImageDataset


@torch.no_grad()
def cache_latents(
    vae: AutoencoderKL, images: ImageDataset, *, batch_size: int, device: torch.device, num_workers: int = 0
) -> list[dict[str, torch.Tensor]]:
    """Per image: its latent distribution and the time ids of the crop it was encoded from.

    Images are encoded a size (bucket) at a time, since a batch must be of one size.
    """
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, size in enumerate(images.sizes):
        by_size.setdefault(size, []).append(index)
    cached: list[dict[str, torch.Tensor]] = [{} for _ in range(len(images))]
    for indices in by_size.values():
        loader = DataLoader(Subset(images, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers)
        positions = iter(indices)
        for batch in loader:
            pixels = batch["pixel_values"].to(device, dtype=vae.dtype)
            params = vae.encode(pixels).latent_dist.parameters.float().cpu()
            for p, t in zip(params, batch["time_ids"], strict=True):
                cached[next(positions)] = {"latent_params": p, "time_ids": t}
    return cached


def sample_latents(
    vae: AutoencoderKL, params: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Scaled latents from a cached distribution, the same as a fresh `vae.encode(...).latent_dist.sample()`."""
    return scale_latents(vae, DiagonalGaussianDistribution(params).sample(generator=generator))


def scale_latents(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


@torch.no_grad()
def cache_text(
    captions: Iterable[str],
    tokenizers: tuple,
    text_encoders: tuple,
    *,
    batch_size: int = 16,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    unique = sorted(set(captions))
    cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for start in range(0, len(unique), batch_size):
        chunk = unique[start : start + batch_size]
        embeds, pooled = encode_prompt(text_encoders, tokenize(tokenizers, chunk))
        for caption, e, p in zip(chunk, embeds.cpu(), pooled.cpu(), strict=True):
            cache[caption] = (e, p)
    return cache

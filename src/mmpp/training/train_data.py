"""From checked examples to what the training loop reads: captions with the trigger, each image's size
(square, or its aspect-ratio bucket), and the latent and text caches."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import torch

from mmpp.logs import log_event
from mmpp.training.batches import TrainDataset
from mmpp.training.buckets import bucket_sizes, bucket_step, nearest_bucket
from mmpp.training.cache import cache_latents, cache_text
from mmpp.training.config import TrainConfig
from mmpp.training.data import Example, Size
from mmpp.training.models import Components
from mmpp.training.pixels import ImageDataset, Transform

log = logging.getLogger(__name__)


@dataclass
class BuiltData:
    dataset: TrainDataset
    buckets: list[int] | None  # per dataset index, for the sampler; None without bucketing
    sizes: dict[Size, int]  # images per training size
    offloaded: list[torch.nn.Module] = field(default_factory=list)  # encoders the caches made idle


def image_sizes(examples: list[Example], resolution: int, multiple: int) -> list[Size]:
    sizes = bucket_sizes(resolution, bucket_step(resolution, multiple))
    found = []
    for example in examples:
        image = example.load()
        found.append(nearest_bucket((image.height, image.width), sizes))
    return found


def build_train_data(
    config: TrainConfig,
    parts: Components,
    examples: list[Example],
    priors: list[Example] | None,
    *,
    resolution: int,
    device: torch.device,
) -> BuiltData:
    c = config
    transform = Transform(resolution, c.center_crop, c.random_flip, c.seed)
    captioned = [replace(e, caption=c.caption(e.caption)) for e in examples]
    sizes = image_sizes(captioned, resolution, parts.resolution_multiple) if c.aspect_buckets else None
    instance = ImageDataset(captioned, transform, sizes)
    prior = ImageDataset(priors, transform) if priors else None
    latents = text = None
    prior_latents: dict[Size, list[dict[str, torch.Tensor]]] | None = None
    offloaded: list[torch.nn.Module] = []
    if c.cache_latents:
        started = time.perf_counter()
        latents = cache_latents(parts.vae, instance, batch_size=c.train_batch_size, device=device,
                                num_workers=c.dataloader_num_workers)
        if prior is not None:
            # Class images are cached at every size an instance image trains at.
            prior_latents = {
                size: cache_latents(parts.vae, prior.resized(size), batch_size=c.train_batch_size, device=device,
                                    num_workers=c.dataloader_num_workers)
                for size in sorted(set(instance.sizes))
            }
        offloaded.append(parts.vae)
        if not c.train_text_encoder:
            captions = [e.caption for e in instance.examples] + ([c.class_prompt] if prior else [])
            text = cache_text(captions, parts.tokenizers, parts.text_encoders)
            offloaded += list(parts.text_encoders)
        cached = len(latents) + sum(len(v) for v in (prior_latents or {}).values())
        log_event(log, logging.INFO, "cached", latents=cached, captions=len(text or {}),
                  seconds=round(time.perf_counter() - started, 2))
    counts: dict[Size, int] = {}
    for size in instance.sizes:
        counts[size] = counts.get(size, 0) + 1
    log_event(
        log, logging.INFO, "training data", images=len(instance), prior_images=len(prior or []),
        resolution=resolution, trigger=c.trigger, repeats=c.repeats,
        sizes=", ".join(f"{w}x{h}: {n}" for (h, w), n in sorted(counts.items())),
    )
    dataset = TrainDataset(instance, prior, tokenizers=parts.tokenizers, repeats=c.repeats, latents=latents,
                           prior_latents=prior_latents, text=text)
    buckets = None
    if c.aspect_buckets:
        ids = {size: i for i, size in enumerate(sorted(counts))}
        buckets = [ids[instance.sizes[dataset.image_index(i)]] for i in range(len(dataset))]
    return BuiltData(dataset, buckets, counts, offloaded)

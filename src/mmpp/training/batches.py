"""What one training step reads: instance samples, then (with prior preservation) as many class samples.

A sample carries either pixels or cached latents, and either token ids or cached text embeddings,
so the training step does not care which caches are on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from mmpp.training.data import Size
from mmpp.training.models import tokenize
from mmpp.training.pixels import ImageDataset

Sample = dict[str, Any]


class TrainDataset(Dataset):
    """`repeats` passes over the instance images per epoch. Class images follow each instance image's
    size (its aspect-ratio bucket), so instance and class samples stack into one batch."""

    def __init__(
        self,
        instance: ImageDataset,
        prior: ImageDataset | None = None,
        *,
        tokenizers: tuple,
        repeats: int = 1,
        latents: Sequence[dict[str, torch.Tensor]] | None = None,
        prior_latents: dict[Size, list[dict[str, torch.Tensor]]] | None = None,
        text: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        self.instance = instance
        self.prior = prior
        self.tokenizers = tokenizers
        self.repeats = repeats
        self.latents = latents
        self.prior_latents = prior_latents
        self.text = text
        self.epoch = 0
        self._prior_views: dict[Size, ImageDataset] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.instance) * self.repeats

    def image_index(self, index: int) -> int:
        return index % len(self.instance)

    def __getitem__(self, index: int) -> dict[str, Sample]:
        image = self.image_index(index)
        item = {"instance": self._sample(self.instance, self.latents, image)}
        if self.prior is not None:
            # Walk through the class images across epochs rather than pairing each instance image
            # with the same few faces forever.
            prior_index = (index + self.epoch * len(self)) % len(self.prior)
            size = self.instance.sizes[image]
            view = self._prior_views.setdefault(size, self.prior.resized(size))
            latents = self.prior_latents[size] if self.prior_latents is not None else None
            item["prior"] = self._sample(view, latents, prior_index)
        return item

    def _sample(
        self, images: ImageDataset, latents: Sequence[dict[str, torch.Tensor]] | None, index: int
    ) -> Sample:
        caption = images.examples[index].caption
        if latents is not None:
            sample: Sample = dict(latents[index])
        else:
            loaded = images[index]
            sample = {"pixel_values": loaded["pixel_values"], "time_ids": loaded["time_ids"]}
        if self.text is not None:
            sample["prompt_embeds"], sample["pooled_prompt_embeds"] = self.text[caption]
        else:
            ids_1, ids_2 = tokenize(self.tokenizers, [caption])
            sample["input_ids_1"], sample["input_ids_2"] = ids_1[0], ids_2[0]
        return sample


def collate(items: list[dict[str, Sample]]) -> dict[str, Any]:
    """Instance samples first, class samples second: the loss splits the batch in two halves."""
    samples = [item["instance"] for item in items] + [item["prior"] for item in items if "prior" in item]
    batch: dict[str, Any] = {key: torch.stack([s[key] for s in samples]) for key in samples[0]}
    batch["num_instance"] = len(items)
    return batch

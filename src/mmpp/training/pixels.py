"""Training images as tensors: each image scaled and cropped to its target size, with SDXL's time ids."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from mmpp.training.data import DataError, Example, Size


@dataclass(frozen=True)
class Transform:
    """Scale to cover the target size, crop it, maybe mirror: decided once per image by its seed.

    Fixing the crop and flip per image keeps cached latents and time ids true to the pixels. The
    target is a square of `resolution` unless a size (an aspect-ratio bucket) is given.
    """

    resolution: int
    center_crop: bool = False
    random_flip: bool = False
    seed: int = 0

    def __call__(
        self, image: Image.Image, index: int, size: Size | None = None
    ) -> tuple[torch.Tensor, Size, Size]:
        rng = random.Random(self.seed * 1_000_003 + index)
        height, width = size or (self.resolution, self.resolution)
        original = (image.height, image.width)
        scale = max(width / image.width, height / image.height)
        scaled = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
        image = image.resize(scaled, Image.Resampling.LANCZOS)
        if self.random_flip and rng.random() < 0.5:
            image = ImageOps.mirror(image)
        if self.center_crop:
            top = round((image.height - height) / 2)
            left = round((image.width - width) / 2)
        else:
            top = rng.randint(0, image.height - height)
            left = rng.randint(0, image.width - width)
        image = image.crop((left, top, left + width, top + height))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
        return pixels.contiguous(), original, (top, left)


def time_ids(original: Size, crop_top_left: Size, target: Size) -> torch.Tensor:
    """SDXL's micro-conditioning: original size, crop corner, target size, each (height, width)."""
    return torch.tensor([*original, *crop_top_left, *target], dtype=torch.float32)


class ImageDataset(Dataset):
    """Examples as pixels + time ids, for encoding once (cache) or every step.

    `sizes` gives each image its own target size (aspect-ratio buckets); by default all are square.
    """

    def __init__(self, examples: Sequence[Example], transform: Transform, sizes: Sequence[Size] | None = None) -> None:
        self.examples = list(examples)
        self.transform = transform
        square = (transform.resolution, transform.resolution)
        self.sizes = list(sizes) if sizes is not None else [square] * len(self.examples)

    def __len__(self) -> int:
        return len(self.examples)

    def image(self, index: int) -> Image.Image:
        example = self.examples[index]
        try:
            return example.load()
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            raise DataError(f"{example.label}: could not read the image ({exc})") from exc

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.item(index, self.sizes[index])

    def item(self, index: int, size: Size) -> dict[str, Any]:
        pixels, original, crop = self.transform(self.image(index), index, size)
        caption = self.examples[index].caption
        return {"pixel_values": pixels, "time_ids": time_ids(original, crop, size), "caption": caption}

    def resized(self, size: Size) -> ImageDataset:
        """The same images, all at one size: class images following an instance batch's bucket."""
        return ImageDataset(self.examples, self.transform, [size] * len(self.examples))

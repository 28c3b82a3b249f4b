"""Aspect-ratio bucketing: each image trains at the size of about resolution² nearest its shape.

A square crop cuts a third off a 3:2 picture; a style learnt from the middles of pictures draws
middles. Instead, sizes of (at most) equal area are laid out at multiples of 64 px (of the model's
own multiple at small resolutions, as on the tiny test model), each image goes to the size whose
aspect ratio is nearest its own and is scaled to cover it, so at most a sliver is cropped. A batch
holds one size only (see `EpochSampler`), and SDXL's time ids carry the real original size, crop
corner and target size, as in SDXL's own multi-aspect training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Size = tuple[int, int]  # (height, width), as SDXL's time ids order them

MAX_RATIO = 2.0  # the widest bucket is 2:1; wider pictures lose their ends, as SDXL's buckets do


def bucket_step(resolution: int, multiple: int) -> int:
    """64 px where the model allows it (SDXL: latents must halve at 32 px) and the resolution is large."""
    return 64 if resolution >= 512 and 64 % multiple == 0 else multiple


def bucket_sizes(resolution: int, step: int, max_ratio: float = MAX_RATIO) -> list[Size]:
    """Every (h, w), both multiples of `step`, of area at most resolution², as large as the step allows."""
    area = resolution * resolution
    sizes: set[Size] = set()
    for width in range(step, int(resolution * max_ratio) + 1, step):
        height = area // width // step * step
        if height >= step and max(height / width, width / height) <= max_ratio:
            sizes.add((height, width))
    return sorted(sizes, key=lambda s: s[1] / s[0])


def nearest_bucket(image_size: Size, sizes: Sequence[Size]) -> Size:
    """The size whose aspect ratio is nearest the image's (log scale: 2:1 and 1:2 are as far from 1:1)."""
    height, width = image_size
    ratio = math.log(width / height)
    return min(sizes, key=lambda s: (abs(math.log(s[1] / s[0]) - ratio), -s[0] * s[1]))

"""The order training reads its images in: reproducible across resumes, one size per batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """A shuffle fixed by (seed, epoch), so a resumed run sees the same order as an uninterrupted one.

    With `buckets` (one bucket id per index) every run of `batch_size` indices comes from one
    bucket: each bucket is shuffled and cut into batches, a short last batch is filled up with
    images of its own bucket, and the batches are shuffled. `skip` drops the first samples of the
    next pass only: resuming mid-epoch without reading images that were already trained on.
    """

    def __init__(self, size: int, seed: int, *, buckets: Sequence[int] | None = None, batch_size: int = 1) -> None:
        self.size = size
        self.seed = seed
        self.buckets = list(buckets) if buckets is not None else None
        self.batch_size = batch_size
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _members(self) -> list[list[int]]:
        assert self.buckets is not None
        groups: dict[int, list[int]] = {}
        for index, bucket in enumerate(self.buckets):
            groups.setdefault(bucket, []).append(index)
        return [groups[b] for b in sorted(groups)]

    def __len__(self) -> int:
        if self.buckets is None:
            return self.size
        return sum(-(-len(m) // self.batch_size) * self.batch_size for m in self._members())

    def order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        if self.buckets is None:
            return torch.randperm(self.size, generator=generator).tolist()
        batches: list[list[int]] = []
        for members in self._members():
            shuffled = [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
            shuffled += [shuffled[i % len(shuffled)] for i in range(-len(shuffled) % self.batch_size)]
            batches += [shuffled[i : i + self.batch_size] for i in range(0, len(shuffled), self.batch_size)]
        return [i for b in torch.randperm(len(batches), generator=generator).tolist() for i in batches[b]]

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        return iter(self.order()[skip:])

"""Who runs next: round-robin between servers, first-in first-out inside one, batches by style.

Pure bookkeeping with no clock, no asyncio and no engine, so the ordering rules can be tested on
their own. A bucket's place in the rotation is its key's place in an insertion-ordered dict: a
bucket that was served moves to the back, a new bucket joins at the back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator
from typing import Generic, Protocol, TypeVar


class Schedulable(Protocol):
    @property
    def bucket(self) -> Hashable: ...

    @property
    def batch_key(self) -> Hashable: ...


J = TypeVar("J", bound=Schedulable)


class FairScheduler(Generic[J]):
    def __init__(self) -> None:
        self._buckets: dict[Hashable, deque[J]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def add(self, job: J) -> None:
        self._buckets.setdefault(job.bucket, deque()).append(job)
        self._count += 1

    def add_front(self, job: J) -> None:
        """Put a job back at the head of its server's line (its run was lost, not its turn)."""
        self._buckets.setdefault(job.bucket, deque()).appendleft(job)
        self._count += 1

    def remove(self, job: J) -> bool:
        """Take a waiting job out (cancel, deadline); False if it was not waiting."""
        bucket = self._buckets.get(job.bucket)
        if bucket is None:
            return False
        try:
            bucket.remove(job)
        except ValueError:
            return False
        if not bucket:
            del self._buckets[job.bucket]
        self._count -= 1
        return True

    def order(self) -> Iterator[J]:
        """Waiting jobs in the order they would start one at a time: the first job of every bucket
        in rotation order, then every bucket's second job, and so on. O(n); exhausted buckets drop
        out so one long bucket beside many short ones costs no empty rounds."""
        live = [iter(bucket) for bucket in self._buckets.values()]
        while live:
            still = []
            for it in live:
                job = next(it, None)
                if job is not None:
                    yield job
                    still.append(it)
            live = still

    def pick(self, max_size: int) -> list[J]:
        """The next batch: the head of the fair order plus the earliest waiting jobs (in fair order)
        that can share its engine call, up to `max_size`. Jobs of other styles are never added; they
        keep their place and the served buckets go to the back of the rotation."""
        jobs = self.order()
        head = next(jobs, None)
        if head is None:
            return []
        batch = [head]
        if max_size > 1:
            for job in jobs:
                if job.batch_key == head.batch_key:
                    batch.append(job)
                    if len(batch) >= max_size:
                        break
        for job in batch:
            self.remove(job)
        for key in dict.fromkeys(job.bucket for job in batch):
            if key in self._buckets:
                self._buckets[key] = self._buckets.pop(key)
        return batch

    def drain(self) -> list[J]:
        """Everything still waiting, in fair order, leaving the scheduler empty."""
        jobs = list(self.order())
        self._buckets.clear()
        self._count = 0
        return jobs

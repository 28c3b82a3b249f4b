"""Who runs next: round-robin between servers, first-in first-out inside one, batches by style.

A job's cost is its pictures (a set of several takes costs its size): a batch holds at most
`max_size` pictures, and a server served a set while others waited sits out that many more turns
(minus one) until the others have had as many pictures, so a set is one place in line but is not
a way to take more than a fair share of the GPU.

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

    @property
    def cost(self) -> int: ...


J = TypeVar("J", bound=Schedulable)


class FairScheduler(Generic[J]):
    def __init__(self) -> None:
        self._buckets: dict[Hashable, deque[J]] = {}
        self._count = 0
        # Pictures a server still owes the others for a set it was served while they waited.
        self._owed: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    @property
    def buckets(self) -> int:
        """Buckets with a job waiting (an emptied bucket is dropped at once)."""
        return len(self._buckets)

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
        out so one long bucket beside many short ones costs no empty rounds. A bucket that owes
        pictures joins that many rounds late."""
        live: list[Iterator[J]] = []
        late: list[tuple[int, Iterator[J]]] = []
        for key, bucket in self._buckets.items():
            owed = self._owed.get(key, 0)
            if owed:
                late.append((owed, iter(bucket)))
            else:
                live.append(iter(bucket))
        round_ = 0
        while live or late:
            # A server whose debt is paid goes first: every pick that passed it moved the others back.
            live = [it for owed, it in late if owed == round_] + live
            late = [(owed, it) for owed, it in late if owed != round_]
            still = []
            for it in live:
                job = next(it, None)
                if job is not None:
                    yield job
                    still.append(it)
            live = still
            round_ += 1

    def pick(self, max_size: int) -> list[J]:
        """The next batch: the head of the fair order plus the earliest waiting jobs (in fair order)
        that can share its engine call, up to `max_size` pictures. The head always goes, even a set
        larger than `max_size` (the worker draws it in several calls). Jobs of other styles are
        never added; they keep their place and the served buckets go to the back of the rotation."""
        jobs = self.order()
        head = next(jobs, None)
        if head is None:
            return []
        batch = [head]
        size = head.cost
        for job in jobs:
            if size >= max_size:
                break
            if job.batch_key == head.batch_key and size + job.cost <= max_size:
                batch.append(job)
                size += job.cost
        for job in batch:
            self.remove(job)
        served = dict.fromkeys(job.bucket for job in batch)
        for key in served:
            if key in self._buckets:
                self._buckets[key] = self._buckets.pop(key)
        self._settle(served, batch)
        return batch

    def _settle(self, served: dict[Hashable, None], batch: list[J]) -> None:
        """Debts after a pick: the others waited through `len(batch pictures)`; a served server owes
        its set's extra pictures only to servers that were waiting beside it."""
        pictures = sum(job.cost for job in batch)
        owed = {
            key: left for key, debt in self._owed.items()
            if key in self._buckets and key not in served and (left := debt - pictures) > 0
        }
        if any(key not in served for key in self._buckets):
            for key in served:
                extra = sum(job.cost - 1 for job in batch if job.bucket == key)
                if extra:
                    owed[key] = extra
        self._owed = owed

    def drain(self) -> list[J]:
        """Everything still waiting, in fair order, leaving the scheduler empty."""
        jobs = list(self.order())
        self._buckets.clear()
        self._owed.clear()
        self._count = 0
        return jobs

"""Jobs and the events a job's consumer sees, from `Queued` to one terminal event.

Events are small frozen dataclasses so the bot can `match` on them. An end that is not a portrait
(`Failed`, `Cancelled`) carries a code and fields, never words: the bot words it (`mmpp.bot.words.errors`).
A job is mutable bookkeeping owned by the event loop thread; the GPU thread only reads its request
(and the request's cancel flag).
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from mmpp.inference.generation import GenerationRequest, GenerationResult


@dataclass(frozen=True)
class Queued:
    """Sent when the job enters the queue and again whenever its place in line changes."""

    position: int
    estimated_wait_s: float


@dataclass(frozen=True)
class Started:
    batch_size: int
    waited_s: float


@dataclass(frozen=True)
class Step:
    i: int
    n: int
    # Only every `preview_every` steps, and never for a job submitted with `previews=False`.
    preview: Image.Image | None = None


@dataclass(frozen=True)
class Timings:
    waited_s: float
    ran_s: float
    engine_s: float
    batch_size: int


@dataclass(frozen=True)
class Done:
    """The finished job: `result` is its first picture; a set of several takes has the rest in `more`."""

    result: GenerationResult
    timings: Timings
    more: tuple[GenerationResult, ...] = ()

    @property
    def results(self) -> tuple[GenerationResult, ...]:
        return (self.result, *self.more)


@dataclass(frozen=True)
class Failed:
    """`code` is stable (logged, stored, counted); `fields` are what its sentence needs (numbers, ids,
    seconds, and for a code with several causes the one that applies, e.g. `timeout`'s `stage`)."""

    code: str
    fields: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Cancelled:
    code: str = "cancelled"
    fields: Mapping[str, Any] = field(default_factory=dict, hash=False)


JobEvent = Queued | Started | Step | Done | Failed | Cancelled
TerminalEvent = Done | Failed | Cancelled
TERMINAL = (Done, Failed, Cancelled)


class JobState(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class EventBuffer:
    """Events waiting for the consumer. Only the newest pending `Queued` is kept: a consumer that
    reads slowly (Discord edits are rate limited) wants where it stands now, not the whole history,
    and a long queue would otherwise hold O(n²) stale position updates."""

    def __init__(self) -> None:
        self._items: deque[JobEvent] = deque()
        self._ready = asyncio.Event()

    def push(self, event: JobEvent) -> None:
        if isinstance(event, Queued) and self._items and isinstance(self._items[-1], Queued):
            self._items[-1] = event
        else:
            self._items.append(event)
        self._ready.set()

    async def get(self) -> JobEvent:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(eq=False)  # identity equality: the scheduler removes jobs from deques by identity
class Job:
    id: str
    user_id: int
    guild_id: int | None
    request: GenerationRequest
    submitted_at: float
    deadline: float
    previews: bool
    state: JobState = JobState.WAITING
    position: int = 0
    started_at: float | None = None
    batch_size: int = 0
    terminal: TerminalEvent | None = None
    # Set by shutdown before it stops a running job, so the member hears "restarting", not "cancelled".
    drop_reason: Failed | None = None
    events: EventBuffer = field(default_factory=EventBuffer)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    expiry: asyncio.TimerHandle | None = None
    # Runs on a remote worker that were lost (worker killed, Redis restarted) and given back to the line.
    attempt: int = 0
    # A set of several takes: the requests after the first, each with its own seed (see `set_requests`).
    more: list[GenerationRequest] = field(default_factory=list)

    @property
    def requests(self) -> list[GenerationRequest]:
        """One request per picture the member gets; they share the face and the cancel flag."""
        return [self.request, *self.more]

    @property
    def cost(self) -> int:
        """What the job takes from a batch and from its server's turn: its pictures."""
        return 1 + len(self.more)

    @property
    def bucket(self) -> Hashable:
        """The fairness unit. A DM is its own bucket per member: with one job per member that bucket
        holds at most one job, so DM users take turns with servers instead of queueing behind each
        other in one shared DM line that gets a single turn per round."""
        if self.guild_id is None:
            return ("dm", self.user_id)
        return ("guild", self.guild_id)

    @property
    def batch_key(self) -> Hashable:
        """What `Engine.generate` requires a batch to share."""
        return (self.request.style, self.request.steps, self.request.lora_scale, self.request.fast)

    @property
    def style(self) -> str:
        return self.request.style


# Odd, so i * SEED_STEP mod 2**31 differs for every i: a set's seeds are distinct and follow from the first.
SEED_STEP = 0x9E3779B1
SEED_SPACE = 2**31


def set_seeds(seed: int, count: int) -> list[int]:
    """The seeds of a set of `count` takes: the job's own first, then derived from it, so a room with a
    fixed seed gets the same set every time."""
    return [seed, *((seed + i * SEED_STEP) % SEED_SPACE for i in range(1, count))]


def set_requests(request: GenerationRequest, count: int) -> list[GenerationRequest]:
    """The requests after the first for a set of `count`; `replace` keeps the one face and cancel flag."""
    return [replace(request, seed=seed) for seed in set_seeds(request.seed, count)[1:]]


@dataclass(frozen=True)
class DroppedJob:
    job_id: str
    user_id: int
    guild_id: int | None
    style: str
    was_running: bool


@dataclass(frozen=True)
class ShutdownReport:
    finished: int
    dropped: tuple[DroppedJob, ...]
    # False when the engine call did not return even after being told to stop (a hung GPU).
    clean: bool

    def summary(self) -> str:
        running = sum(d.was_running for d in self.dropped)
        return (
            f"{self.finished} finished during shutdown, {len(self.dropped)} dropped "
            f"({running} running, {len(self.dropped) - running} waiting)"
            + ("" if self.clean else "; the GPU thread did not stop in time")
        )

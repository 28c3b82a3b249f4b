"""What a member (or an admin) asks for, and whether it may start.

Every entry point (/profile, the avatar menu, Reroll, /style preview) admits the request first
(`Admissions.admit`, from memory alone, before anything is awaited), acknowledges it, then builds
an order and hands it to `mmpp.bot.portrait.follow.make_portrait`. Two kinds of order: a member's
own `PortraitOrder` (a set of takes, kept for Post, Reroll and /last, shaped to wear) and an admin's
`SampleOrder` (one picture of the sample face, shown once).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from mmpp.bot.db import ResolvedPreset
from mmpp.bot.db.job_log import JobKind
from mmpp.bot.words.i18n import N_
from mmpp.errors import UserFacingError

if TYPE_CHECKING:
    import discord

    from mmpp.inference.preprocess import LocatedFace
    from mmpp.inference.queue import QueueFront

# Where the face comes from: a download (after the quota is reserved), a face in hand, a sample.
FaceSource = Callable[[], Awaitable["LocatedFace"]]


def face_in_hand(face: LocatedFace) -> FaceSource:
    """A face already located (a Reroll's, from the face cache) as a source."""

    async def source() -> LocatedFace:
        return face

    return source


def new_seed() -> int:
    """A fresh seed, 31 bits like `mmpp.inference.engine.random_seed` (not imported from there: a
    bot that does not draw never imports the engine)."""
    return secrets.randbelow(2**31)


@dataclass(frozen=True, kw_only=True)
class BaseOrder:
    job_kind: ClassVar[JobKind]
    face: FaceSource
    style: str
    preset: ResolvedPreset
    seed: int | None = None
    # The member's own choice about the unlinkable guard where the room allows one; None: the room's.
    unlinkable: bool | None = None


@dataclass(frozen=True, kw_only=True)
class SampleOrder(BaseOrder):
    """An admin's `/style preview`: one picture of the sample face in the room's look, shown once,
    never kept, worn or posted."""

    job_kind: ClassVar[JobKind] = "preview"


@dataclass(frozen=True, kw_only=True)
class PortraitOrder(BaseOrder):
    """A member's own portrait: a set of takes, kept for Post, Reroll and /last, shaped to wear,
    posted at once where the room chose so."""

    job_kind: ClassVar[JobKind] = "portrait"
    # The buttons the finished set comes with (`mmpp.bot.portrait.buttons.PortraitView`); its exact
    # signature is `mmpp.bot.portrait.deliver.Offer`, which imports this module.
    offer: Callable[..., discord.ui.View]
    # A reroll reuses the face token its portrait already has; a new upload gets a new one.
    face_token: str | None = None


Order = PortraitOrder | SampleOrder


class CancelledWhilePreparing(UserFacingError):
    code = "cancelled"

    def __init__(self) -> None:
        super().__init__(N_("Cancelled. Run {profile_command} again whenever you like."))


class StillPreparing(UserFacingError):
    code = "still_preparing"

    def __init__(self) -> None:
        super().__init__(
            N_("I'm still reading the picture you sent a moment ago. Wait for that portrait before asking for another.")
        )


class Admissions:
    """Requests acknowledged but not queued yet (quota, download, face: one per member), and
    which of them /cancel stopped meanwhile. The queue decides admission (`QueueFront.admit`);
    this only tells it how many places such requests hold."""

    def __init__(self, queue: QueueFront) -> None:
        self.queue = queue
        self._preparing: set[int] = set()
        self._cancelled: set[int] = set()

    @contextmanager
    def admit(self, user_id: int) -> Iterator[None]:
        """Admit a member's request, or refuse it from memory alone, so the answer is instant and
        comes before any download: a closing queue, one request per member (being prepared,
        waiting or running), a full line counting requests still being prepared as places taken.

        Held around the whole request; the place is given back when the job is queued
        (`make_portrait` calls `release`) or when the request ends. Nothing awaits between the
        check and taking the place, so a burst cannot pass it together."""
        # A closing queue's answer comes first (from `admit`).
        if user_id in self._preparing and self.queue.accepting:
            raise StillPreparing()
        self.queue.admit(user_id, preparing=len(self._preparing))
        self._preparing.add(user_id)
        try:
            yield
        finally:
            self.release(user_id)

    def release(self, user_id: int) -> None:
        """The request is queued (its place now counts in the queue) or over."""
        self._preparing.discard(user_id)
        self._cancelled.discard(user_id)

    def cancel(self, user_id: int) -> bool:
        """/cancel for a request not queued yet: it stops before it reaches the queue."""
        if user_id not in self._preparing:
            return False
        self._cancelled.add(user_id)
        return True

    def cancelled(self, user_id: int) -> bool:
        return user_id in self._cancelled

    def preparing(self, user_id: int) -> bool:
        return user_id in self._preparing

    @property
    def busy(self) -> bool:
        """Whether any request is still being prepared (a graceful stop waits for their answers)."""
        return bool(self._preparing)

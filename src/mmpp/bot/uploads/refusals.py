"""Pictures the bot could not use (no face, not a picture, damaged...), counted per member for a
short while. Each one cost a download and a decode in the shared decode pool, so a member who keeps
sending pictures that cannot work is asked to wait before the next one is even downloaded.

Per Discord user, across servers (each account counts for itself), in memory only, and bounded: the
members who were refused longest ago are forgotten first. A delivered portrait starts the count over.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from mmpp.bot.words.markup import discord_time
from mmpp.errors import N_, UserFacingError

# Three pictures that could not work within two minutes, then a wait until the oldest is two minutes
# old: a member fixing their photo rarely needs more tries than that, and a script gets one decode
# per 40 s. Not a setting: nothing about a server changes what a fair number of retries is.
ALLOWED_REFUSALS = 3
WINDOW_S = 120.0
# Members remembered at once; a burst of new accounts pushes out the oldest, never grows memory.
MAX_MEMBERS = 10_000


class TooManyRefusedUploads(UserFacingError):
    code = "refused_uploads"

    def __init__(self, count: int, wait_s: float) -> None:
        super().__init__(
            N_("The last {count} pictures you sent didn't work, so please take a short break: try again "
               "{when} with a clear photo of your face."),
            count=count, when=discord_time(wait_s),
        )
        self.wait_s = wait_s


class RefusedUploads:
    def __init__(
        self,
        allowed: int = ALLOWED_REFUSALS,
        window_s: float = WINDOW_S,
        max_members: int = MAX_MEMBERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed, self.window_s, self.max_members, self.clock = allowed, window_s, max_members, clock
        self._times: OrderedDict[int, deque[float]] = OrderedDict()

    def check(self, user_id: int) -> None:
        """Raises `TooManyRefusedUploads` while `user_id` has used up their refusals (memory only)."""
        times = self._recent(user_id)
        if times is not None and len(times) >= self.allowed:
            raise TooManyRefusedUploads(len(times), times[0] + self.window_s - self.clock())

    def refused(self, user_id: int) -> None:
        times = self._recent(user_id)
        if times is None:
            times = self._times[user_id] = deque(maxlen=self.allowed)
        times.append(self.clock())
        self._times.move_to_end(user_id)
        while len(self._times) > self.max_members:
            self._times.popitem(last=False)

    def forget(self, user_id: int) -> None:
        self._times.pop(user_id, None)

    def __len__(self) -> int:
        return len(self._times)

    def _recent(self, user_id: int) -> deque[float] | None:
        times = self._times.get(user_id)
        if times is None:
            return None
        cutoff = self.clock() - self.window_s
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._times[user_id]
            return None
        return times

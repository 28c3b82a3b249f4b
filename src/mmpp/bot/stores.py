"""What the bot keeps in memory for a while on a member's behalf: one store, two uses.

- The Reroll faces (`Services.faces`): a compact face crop (`LocatedFace.compact()`, never the upload or
  the whole photo), so the Reroll button works without a new upload.
- The kept results (`Services.results`): a finished set of portraits, so a member can Post one after
  seeing it privately, or get it back with `/last` when neither the reply nor a DM reached them.

Both are kept only until `ttl_s` after they were put (rerolls and posts do not extend it), the member
presses Delete, the portrait fails, or the bot stops; never on disk or in the database. Both are bounded
in bytes as well as in entries, oldest first: a crop from a phone selfie is up to 1024² RGB (3 MB), so
512 of them would be 1.5 GB, and a busy bot's memory must stay flat. A member whose entry was dropped
early is asked to upload (or draw) again, as after the TTL.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from mmpp.inference.generation import SafetyLevel
    from mmpp.inference.preprocess import LocatedFace

V = TypeVar("V")


def face_bytes(face: LocatedFace) -> int:
    """The pixel memory one kept crop holds."""
    image = face.image
    return image.width * image.height * len(image.getbands())


@dataclass(frozen=True)
class DrawnUnder:
    """Where a set was drawn and under which rules: Post publishes it only where these still hold
    (`mmpp.bot.portrait.rules.check_room`), wherever it is pressed (the reply, `/last` elsewhere)."""

    guild_id: int | None
    channel_id: int | None
    # The safety check the pictures passed ("strict" or "relaxed").
    safety: SafetyLevel
    # Whether the unlinkable guard ran on them; `linkable`: it ran and could not make them unlinkable
    # (the member was told, and may still post: the guard protects them, and they decide).
    guarded: bool
    linkable: bool = False


@dataclass
class KeptResult:
    """A finished set of portraits, as Post and `/last` need it."""

    style: str
    pngs: list[bytes]
    seeds: list[int]
    drawn: DrawnUnder
    # Indexes already posted: a second Post of the same picture would only repeat it in the room.
    posted: set[int] = field(default_factory=set)

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.pngs)


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    owner_id: int
    expires_at: float
    size: int


class TimedStore(Generic[V]):
    """Values kept for `ttl_s`, each for one owner, under `max_entries` and `max_bytes` (oldest dropped first).

    `size` says how many bytes one value holds; the total is kept as it goes, so eviction never re-adds
    every entry."""

    def __init__(
        self, ttl_s: float, size: Callable[[V], int], *, max_entries: int | None = None, max_bytes: int = 256 * 2**20
    ) -> None:
        """`max_entries` None: bounded by bytes alone."""
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._size = size
        self._entries: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def put(self, value: V, owner_id: int) -> str:
        self.sweep()
        token = secrets.token_urlsafe(9)
        size = self._size(value)
        self._entries[token] = _Entry(value, owner_id, time.monotonic() + self.ttl_s, size)
        self._bytes += size
        # The newest entry stays even alone over the cap: it is the one its member may reroll or post next.
        while len(self._entries) > 1 and self._over():
            self._drop(next(iter(self._entries)))
        return token

    def _over(self) -> bool:
        too_many = self.max_entries is not None and len(self._entries) > self.max_entries
        return too_many or self._bytes > self.max_bytes

    def get(self, token: str, owner_id: int) -> V | None:
        """The value, if it is still kept and belongs to `owner_id` (nobody rerolls or posts another's)."""
        self.sweep()
        entry = self._entries.get(token)
        return entry.value if entry is not None and entry.owner_id == owner_id else None

    def latest(self, owner_id: int) -> tuple[str, V] | None:
        """`owner_id`'s newest kept value and its token (for `/last`)."""
        self.sweep()
        for token in reversed(self._entries):
            entry = self._entries[token]
            if entry.owner_id == owner_id:
                return token, entry.value
        return None

    def forget(self, token: str) -> None:
        self._drop(token)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        self.sweep()
        return len(self._entries)

    def sweep(self) -> None:
        """Drop every expired entry. One TTL and entries kept in the order they came make the oldest
        the first to expire: the sweep stops at the first entry still alive instead of reading all."""
        now = time.monotonic()
        while self._entries:
            token, entry = next(iter(self._entries.items()))
            if entry.expires_at > now:
                return
            self._drop(token)

    def _drop(self, token: str) -> None:
        entry = self._entries.pop(token, None)
        if entry is not None:
            self._bytes -= entry.size


def face_store(ttl_s: float, *, max_entries: int = 512, max_bytes: int = 256 * 2**20) -> TimedStore[LocatedFace]:
    """The Reroll faces: also capped in entries, as each holds a whole crop's pixels."""
    return TimedStore(ttl_s, face_bytes, max_entries=max_entries, max_bytes=max_bytes)


def result_store(ttl_s: float, *, max_bytes: int = 256 * 2**20) -> TimedStore[KeptResult]:
    """The kept results: capped in bytes (their PNGs) alone."""
    return TimedStore(ttl_s, lambda kept: kept.size, max_bytes=max_bytes)

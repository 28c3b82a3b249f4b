"""Finished portraits kept in memory for a while, so a member can Post one after seeing it privately,
or get it back with `/last` when neither the reply nor a DM reached them.

Same limits as the Reroll faces (`mmpp.bot.face_cache`): kept until `ttl_s` after they were drawn, at
most `max_bytes` in all (oldest dropped first), never on disk or in the database, gone when the bot
stops or the member presses Delete.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class KeptResult:
    owner_id: int
    style: str
    pngs: list[bytes]
    seeds: list[int]
    expires_at: float
    # Indexes already posted: a second Post of the same picture would only repeat it in the room.
    posted: set[int] = field(default_factory=set)

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.pngs)


class ResultStore:
    def __init__(self, ttl_s: float, max_bytes: int = 256 * 2**20) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, KeptResult] = OrderedDict()
        # Kept as a running total (as `FaceCache` does): eviction below must not re-add every entry.
        self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def put(self, owner_id: int, style: str, pngs: list[bytes], seeds: list[int]) -> str:
        self.sweep()
        token = secrets.token_urlsafe(9)
        entry = KeptResult(owner_id, style, list(pngs), list(seeds), time.monotonic() + self.ttl_s)
        self._entries[token] = entry
        self._bytes += entry.size
        # The newest set stays even alone over the cap: it is the one its member may post next.
        while len(self._entries) > 1 and self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        return token

    def get(self, token: str, owner_id: int) -> KeptResult | None:
        """The set, if still kept and `owner_id`'s (nobody posts another member's portrait)."""
        self.sweep()
        entry = self._entries.get(token)
        return entry if entry is not None and entry.owner_id == owner_id else None

    def latest(self, owner_id: int) -> tuple[str, KeptResult] | None:
        self.sweep()
        for token in reversed(self._entries):
            entry = self._entries[token]
            if entry.owner_id == owner_id:
                return token, entry
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
        now = time.monotonic()
        for token in [t for t, e in self._entries.items() if e.expires_at <= now]:
            self._drop(token)

    def _drop(self, token: str) -> None:
        entry = self._entries.pop(token, None)
        if entry is not None:
            self._bytes -= entry.size

"""Face crops kept in memory for a while so the Reroll button works without a new upload.

Only a compact face crop (`LocatedFace.compact()`, never the upload or the whole photo) is kept,
never on disk, and only until `ttl_s` after the upload (rerolls do not extend it), the member
presses Delete, the portrait fails, or the bot stops.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from inference.preprocess import LocatedFace


@dataclass(frozen=True)
class CachedFace:
    face: LocatedFace
    owner_id: int
    expires_at: float


class FaceCache:
    def __init__(self, ttl_s: float, max_entries: int = 512) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CachedFace] = OrderedDict()

    def put(self, face: LocatedFace, owner_id: int) -> str:
        self.sweep()
        token = secrets.token_urlsafe(9)
        self._entries[token] = CachedFace(face, owner_id, time.monotonic() + self.ttl_s)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return token

    def get(self, token: str, owner_id: int) -> LocatedFace | None:
        """The face, if it is still kept and belongs to `owner_id` (nobody rerolls another's face)."""
        self.sweep()
        entry = self._entries.get(token)
        return entry.face if entry is not None and entry.owner_id == owner_id else None

    def forget(self, token: str) -> None:
        self._entries.pop(token, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        self.sweep()
        return len(self._entries)

    def sweep(self) -> None:
        """Drop every expired face."""
        now = time.monotonic()
        for token in [t for t, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[token]

"""Face crops kept in memory for a while so the Reroll button works without a new upload.

Only a compact face crop (`LocatedFace.compact()`, never the upload or the whole photo) is kept,
never on disk, and only until `ttl_s` after the upload (rerolls do not extend it), the member
presses Delete, the portrait fails, or the bot stops.

The cache is bounded in bytes as well as in entries, oldest first: a crop from a phone selfie is
up to 1024² RGB (3 MB), so 512 of them would be 1.5 GB, and a busy bot's memory must stay flat.
A member whose crop was dropped early is asked to upload again, as after the TTL.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from mmpp.inference.preprocess import LocatedFace


def face_bytes(face: LocatedFace) -> int:
    """The pixel memory one kept crop holds."""
    image = face.image
    return image.width * image.height * len(image.getbands())


@dataclass(frozen=True)
class CachedFace:
    face: LocatedFace
    owner_id: int
    expires_at: float
    size: int


class FaceCache:
    def __init__(self, ttl_s: float, max_entries: int = 512, max_bytes: int = 256 * 2**20) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CachedFace] = OrderedDict()
        self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def put(self, face: LocatedFace, owner_id: int) -> str:
        self.sweep()
        token = secrets.token_urlsafe(9)
        size = face_bytes(face)
        self._entries[token] = CachedFace(face, owner_id, time.monotonic() + self.ttl_s, size)
        self._bytes += size
        # The newest crop stays even alone over the cap: it is the one its member may reroll next.
        while len(self._entries) > 1 and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
            self._drop(next(iter(self._entries)))
        return token

    def get(self, token: str, owner_id: int) -> LocatedFace | None:
        """The face, if it is still kept and belongs to `owner_id` (nobody rerolls another's face)."""
        self.sweep()
        entry = self._entries.get(token)
        return entry.face if entry is not None and entry.owner_id == owner_id else None

    def forget(self, token: str) -> None:
        self._drop(token)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        self.sweep()
        return len(self._entries)

    def sweep(self) -> None:
        """Drop every expired face."""
        now = time.monotonic()
        for token in [t for t, e in self._entries.items() if e.expires_at <= now]:
            self._drop(token)

    def _drop(self, token: str) -> None:
        entry = self._entries.pop(token, None)
        if entry is not None:
            self._bytes -= entry.size

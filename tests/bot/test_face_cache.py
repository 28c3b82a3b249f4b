"""The Reroll cache keeps face crops in memory, bounded in time, in entries and in bytes."""

from __future__ import annotations

import time

from PIL import Image

from mmpp.bot.face_cache import FaceCache, face_bytes
from mmpp.inference.faces import Box
from mmpp.inference.preprocess import LocatedFace

MB = 2**20


def crop(side: int, shade: int = 128) -> LocatedFace:
    image = Image.new("RGB", (side, side), (shade, shade, shade))
    return LocatedFace(image, Box(side // 4, side // 4, side // 2, side // 2))


def test_a_full_cache_drops_its_oldest_crops_first_and_stays_under_its_byte_cap() -> None:
    phone_crop = crop(1024)  # a phone selfie's crop: 3 MB of pixels
    assert face_bytes(phone_crop) == 3 * MB
    cache = FaceCache(ttl_s=900, max_bytes=10 * MB)
    tokens = [cache.put(crop(1024, shade), owner_id=shade) for shade in range(5)]
    assert cache.bytes <= 10 * MB
    assert [cache.get(t, shade) is not None for shade, t in enumerate(tokens)] == [False, False, True, True, True]


def test_the_newest_crop_is_kept_even_alone_over_the_cap() -> None:
    cache = FaceCache(ttl_s=900, max_bytes=1 * MB)
    token = cache.put(crop(1024), owner_id=7)
    assert cache.get(token, 7) is not None


def test_forgotten_and_expired_crops_give_their_bytes_back() -> None:
    cache = FaceCache(ttl_s=0.05, max_bytes=100 * MB)
    kept = cache.put(crop(512), owner_id=1)
    cache.put(crop(512), owner_id=2)
    cache.forget(kept)
    assert cache.bytes == 512 * 512 * 3
    time.sleep(0.06)
    assert len(cache) == 0 and cache.bytes == 0


def test_the_entry_cap_still_holds() -> None:
    entries = 3
    cache = FaceCache(ttl_s=900, max_entries=entries)
    tokens = [cache.put(crop(64), owner_id=1) for _ in range(entries + 2)]
    assert len(cache) == entries and cache.get(tokens[0], 1) is None and cache.get(tokens[-1], 1) is not None


def test_nobody_rerolls_another_members_face() -> None:
    cache = FaceCache(ttl_s=900)
    token = cache.put(crop(64), owner_id=1)
    assert cache.get(token, owner_id=2) is None and cache.get(token, owner_id=1) is not None

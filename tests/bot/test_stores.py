"""The in-memory store behind the Reroll faces and the kept results: bounded in time, in entries and
in bytes, oldest first, the newest always kept, and nobody gets another member's entry."""

from __future__ import annotations

import time

from PIL import Image

from mmpp.bot.stores import DrawnUnder, KeptResult, face_bytes, face_store, result_store
from mmpp.inference.faces import Box
from mmpp.inference.preprocess import LocatedFace

MB = 2**20


def crop(side: int, shade: int = 128) -> LocatedFace:
    image = Image.new("RGB", (side, side), (shade, shade, shade))
    return LocatedFace(image, Box(side // 4, side // 4, side // 2, side // 2))


def kept(*pngs: bytes) -> KeptResult:
    return KeptResult("tiny-style", list(pngs), list(range(len(pngs))), DrawnUnder(None, None, "strict", True))


# --- the store, shown on face crops ----------------------------------------------------------------


def test_a_full_store_drops_its_oldest_entries_first_and_stays_under_its_byte_cap() -> None:
    phone_crop = crop(1024)  # a phone selfie's crop: 3 MB of pixels
    assert face_bytes(phone_crop) == 3 * MB
    cache = face_store(ttl_s=900, max_bytes=10 * MB)
    tokens = [cache.put(crop(1024, shade), owner_id=shade) for shade in range(5)]
    assert cache.bytes <= 10 * MB
    assert [cache.get(t, shade) is not None for shade, t in enumerate(tokens)] == [False, False, True, True, True]


def test_the_newest_entry_is_kept_even_alone_over_the_cap() -> None:
    cache = face_store(ttl_s=900, max_bytes=1 * MB)
    token = cache.put(crop(1024), owner_id=7)
    assert cache.get(token, 7) is not None


def test_forgotten_and_expired_entries_give_their_bytes_back() -> None:
    cache = face_store(ttl_s=0.05, max_bytes=100 * MB)
    first = cache.put(crop(512), owner_id=1)
    cache.put(crop(512), owner_id=2)
    cache.forget(first)
    assert cache.bytes == 512 * 512 * 3
    time.sleep(0.06)
    assert len(cache) == 0 and cache.bytes == 0


def test_nobody_rerolls_another_members_face() -> None:
    cache = face_store(ttl_s=900)
    token = cache.put(crop(64), owner_id=1)
    assert cache.get(token, owner_id=2) is None and cache.get(token, owner_id=1) is not None


# --- what is specific to each use ------------------------------------------------------------------


def test_the_faces_entry_cap_still_holds() -> None:
    entries = 3
    cache = face_store(ttl_s=900, max_entries=entries)
    tokens = [cache.put(crop(64), owner_id=1) for _ in range(entries + 2)]
    assert len(cache) == entries and cache.get(tokens[0], 1) is None and cache.get(tokens[-1], 1) is not None


def test_kept_sets_stay_under_the_byte_cap_oldest_first_and_the_newest_always_stays() -> None:
    store = result_store(ttl_s=60, max_bytes=100)
    first = store.put(kept(b"a" * 40), 1)
    second = store.put(kept(b"b" * 40), 2)
    third = store.put(kept(b"c" * 40), 3)
    assert store.get(first, 1) is None and store.get(third, 3) is not None
    assert store.bytes == 80
    store.forget(second)
    assert store.bytes == 40
    huge = store.put(kept(b"d" * 500, b"e" * 10), 4)  # alone over the cap: still kept
    assert store.get(huge, 4) is not None and len(store) == 1 and store.bytes == 510
    assert store.get(huge, 5) is None  # nobody gets another member's set
    store.clear()
    assert store.bytes == 0 and len(store) == 0


def test_kept_sets_are_capped_in_bytes_alone_and_last_finds_each_members_newest() -> None:
    store = result_store(ttl_s=60)
    tokens = [store.put(kept(b"x"), owner_id=n % 2) for n in range(600)]  # more than the faces' 512 entries
    assert len(store) == 600
    assert store.latest(1) == (tokens[-1], store.get(tokens[-1], 1))
    assert store.latest(0) is not None and store.latest(0)[0] == tokens[-2]  # type: ignore[index]
    assert store.latest(2) is None

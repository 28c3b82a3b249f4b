"""Finished portraits kept for Post and /last stay within REROLL_CACHE_MB: oldest sets go first."""

from __future__ import annotations

from mmpp.bot.results import ResultStore


def test_kept_sets_stay_under_the_byte_cap_oldest_first_and_the_newest_always_stays() -> None:
    store = ResultStore(ttl_s=60, max_bytes=100)
    first = store.put(1, "tiny-style", [b"a" * 40], [1])
    second = store.put(2, "tiny-style", [b"b" * 40], [2])
    third = store.put(3, "tiny-style", [b"c" * 40], [3])
    assert store.get(first, 1) is None and store.get(third, 3) is not None
    assert store.bytes == 80
    store.forget(second)
    assert store.bytes == 40
    huge = store.put(4, "tiny-style", [b"d" * 500, b"e" * 10], [4, 5])  # alone over the cap: still kept
    assert store.get(huge, 4) is not None and len(store) == 1 and store.bytes == 510
    assert store.get(huge, 5) is None  # nobody gets another member's set
    store.clear()
    assert store.bytes == 0 and len(store) == 0

"""What members and admins see of the named backgrounds (`inference.backgrounds`), per language.

One table, keyed by background name then by Discord locale prefix, so it can move into the
message catalogue whole. The prompt never sees these: it gets the English fragment.
"""

from __future__ import annotations

from typing import Final

from inference.backgrounds import BACKGROUNDS

FALLBACK_LOCALE: Final = "en"

LABELS: Final[dict[str, dict[str, str]]] = {
    "soft-pastel": {"en": "Soft pastel", "ko": "부드러운 파스텔"},
    "white-studio": {"en": "White studio", "ko": "하얀 스튜디오"},
    "sky-blue": {"en": "Sky blue", "ko": "하늘색"},
    "mint": {"en": "Mint green", "ko": "민트색"},
    "black": {"en": "Black", "ko": "검은색"},
    "sunset": {"en": "Sunset sky", "ko": "노을 하늘"},
    "night-sky": {"en": "Night sky", "ko": "밤하늘"},
    "outer-space": {"en": "Outer space", "ko": "우주"},
    "forest": {"en": "Forest", "ko": "숲"},
    "beach": {"en": "Beach", "ko": "해변"},
    "cherry-blossoms": {"en": "Cherry blossoms", "ko": "벚꽃"},
    "city-lights": {"en": "City lights at night", "ko": "도시 야경"},
}


def label(name: str, locale: str = FALLBACK_LOCALE) -> str:
    """A named background's label in `locale` (a Discord locale such as "ko" or "en-US"); a free
    background is shown as typed."""
    labels = LABELS.get(name)
    if labels is None:
        return name
    return labels.get(locale.split("-")[0].lower()) or labels[FALLBACK_LOCALE]


def named(text: str) -> str | None:
    """The background name an admin meant by `text`: its name or its label in any language."""
    wanted = " ".join(text.split()).casefold()
    for name, labels in LABELS.items():
        if wanted == name or wanted in (value.casefold() for value in labels.values()):
            return name
    return None


def choices(current: str, locale: str) -> list[tuple[str, str]]:
    """(label, value) suggestions for what an admin is typing: the named backgrounds that match,
    then the typed text itself when it is English, since any English colour or scene is welcome too
    (the prompt takes English only)."""
    wanted = current.strip().casefold()
    found = [
        (label(name, locale), name)
        for name in BACKGROUNDS
        if not wanted or wanted in name or any(wanted in v.casefold() for v in LABELS[name].values())
    ]
    if wanted and wanted.isascii() and named(current) is None:
        found.append((current.strip()[:100], current.strip()[:100]))
    return found[:25]

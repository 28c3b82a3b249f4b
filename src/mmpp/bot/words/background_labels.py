"""What members and admins see of the named backgrounds (`mmpp.inference.backgrounds`), per language.

The labels are English message ids of the bot's catalogue (`bot/words/locales/`), so a new language's
catalogue labels them too. The prompt never sees these: it gets the English fragment.
"""

from __future__ import annotations

from typing import Final

from mmpp.bot.words.i18n import N_, Where, languages, match, tr
from mmpp.inference.backgrounds import BACKGROUNDS

LABELS: Final[dict[str, str]] = {
    "soft-pastel": N_("Soft pastel"),
    "white-studio": N_("White studio"),
    "sky-blue": N_("Sky blue"),
    "mint": N_("Mint green"),
    "black": N_("Black"),
    "sunset": N_("Sunset sky"),
    "night-sky": N_("Night sky"),
    "outer-space": N_("Outer space"),
    "forest": N_("Forest"),
    "beach": N_("Beach"),
    "cherry-blossoms": N_("Cherry blossoms"),
    "city-lights": N_("City lights at night"),
}


def _language(where: Where) -> Where:
    """A Discord locale string ("ko", "en-US", "fr") becomes a language we have, else English."""
    return (match(where) or "en") if isinstance(where, str) else where


def label(name: str, where: Where = "en") -> str:
    """A named background's label in the language of `where` (an interaction or a Discord locale);
    a free background is shown as typed."""
    english = LABELS.get(name)
    return name if english is None else tr(_language(where), english)


def translations(name: str) -> set[str]:
    """Every label of a named background, one per language we speak."""
    return {tr(language, LABELS[name]) for language in languages()}


def named(text: str) -> str | None:
    """The background name an admin meant by `text`: its name or its label in any language."""
    wanted = " ".join(text.split()).casefold()
    for name in LABELS:
        if wanted == name or wanted in (value.casefold() for value in translations(name)):
            return name
    return None


def choices(current: str, where: Where) -> list[tuple[str, str]]:
    """(label, value) suggestions for what an admin is typing: the named backgrounds that match,
    then the typed text itself when it is English, since any English colour or scene is welcome too
    (the prompt takes English only)."""
    wanted = current.strip().casefold()
    found = [
        (label(name, where), name)
        for name in BACKGROUNDS
        if not wanted or wanted in name or any(wanted in v.casefold() for v in translations(name))
    ]
    if wanted and wanted.isascii() and named(current) is None:
        found.append((current.strip()[:100], current.strip()[:100]))
    return found[:25]

"""Backgrounds a server may choose by name, as SDXL reads them: short English prompt fragments.

SDXL's text encoders read English, so a background always reaches the prompt in English: a named
one through this table, a free one as the admin typed it (English letters only; see
`mmpp.bot.db.looks`). What members see of a named background (its label in their language) lives
with the bot, in `mmpp.bot.words.background_labels`, keyed by the same names.
"""

from __future__ import annotations

from typing import Final

# Calm colours and simple scenes: a portrait's background should read at avatar size and never
# compete with the face (every built-in style also says "busy background" in its negatives).
BACKGROUNDS: Final[dict[str, str]] = {
    "soft-pastel": "soft pastel gradient background",
    "white-studio": "clean white studio backdrop",
    "sky-blue": "plain sky blue background",
    "mint": "plain mint green background",
    "black": "plain black background",
    "sunset": "warm orange and pink sunset sky background",
    "night-sky": "deep blue starry night sky background",
    "outer-space": "outer space nebula background",
    "forest": "soft-focus green forest background",
    "beach": "sunny beach and sea background",
    "cherry-blossoms": "pink cherry blossom background",
    "city-lights": "blurred city lights at night background",
}


def background_prompt(background: str | None) -> str:
    """The prompt's words for a preset's background: a named one's fragment, a free one as a plain
    backdrop of that colour or thing, and none at all a simple one."""
    if not background:
        return "simple background"
    return BACKGROUNDS.get(background) or f"plain {background} background"

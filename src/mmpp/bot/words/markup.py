"""Discord's own markup in the bot's sentences: what inference gives as plain numbers (seconds from
now), a member reads as a moment their Discord client words in their language."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

# Discord refuses a whole message with an embed title or description longer than these, or with more
# text in all its embeds together; a style's title and description have no limit of their own.
EMBED_TITLE_LENGTH = 256
EMBED_DESCRIPTION_LENGTH = 4096
EMBEDS_TOTAL_LENGTH = 6000
EMBED_FIELD_VALUE_LENGTH = 1024

# Fields given in seconds from now, and the `{field}` their sentences show them as.
MOMENTS = {"estimated_wait_s": "when"}


def discord_time(seconds_from_now: float) -> str:
    """A moment as a Discord timestamp ("in 2 minutes"), which each member's client words in their language."""
    return f"<t:{int(time.time() + max(seconds_from_now, 0)) + 1}:R>"


def shown(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A code's fields as its sentence shows them: seconds from now as a Discord moment (`MOMENTS`),
    a list of names joined ("none" when empty, as the English sentences have always said)."""
    out = dict(fields)
    for seconds, moment in MOMENTS.items():
        if isinstance(fields.get(seconds), int | float) and moment not in out:
            out[moment] = discord_time(fields[seconds])
    for name, value in fields.items():
        if isinstance(value, list | tuple):
            out[name] = ", ".join(str(v) for v in value) or "none"
    return out


def shortened(text: str, most: int) -> str:
    """`text`, or its start and "…" where it is over `most` characters (Discord refuses longer ones)."""
    return text if len(text) <= most else text[: max(most - 1, 0)].rstrip() + "…"


def lines_within(lines: list[str], most: int) -> str:
    """As many whole lines as fit in `most` characters (an embed field's value), "…" for the rest."""
    kept: list[str] = []
    for line in lines:
        if len("\n".join([*kept, line, "…"])) > most:
            return "\n".join([*kept, "…"])
        kept.append(line)
    return "\n".join(kept)

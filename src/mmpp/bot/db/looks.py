"""What a look is: `ResolvedPreset` (a style, its touches, a seed policy and the room's options), and
the checks a look an admin sets must pass before it is stored (`new_preset`).

A look is pinned for a server (its preset) or for one channel (its override), or is the global default;
`presets.py` stores them, `resolution.py` picks the one a job gets.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args

from mmpp.bot.db.errors import InvalidPresetValue
from mmpp.bot.db.models import TOUCH_LENGTH
from mmpp.bot.db.options import RoomOptions, names
from mmpp.errors import N_

SeedPolicy = Literal["random", "fixed", "per_user"]
PresetSource = Literal["channel", "server", "default"]

_UINT64_LIMIT: Final = 1 << 64
# Colours ("teal", "#1e90ff") and framing words ("head and shoulders") end up in a prompt: keep them short
# and plain so a preset cannot smuggle a paragraph of prompt text in.
_TOUCH: Final = re.compile(rf"[a-z0-9#][a-z0-9 #-]{{0,{TOUCH_LENGTH - 1}}}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedPreset(RoomOptions):
    """The look a /profile job gets, its room's options (`RoomOptions`), and where it came from (for
    `/style show`)."""

    style: str
    background: str | None = None
    framing: str | None = None
    seed_policy: SeedPolicy = "random"
    seed: int | None = None
    source: PresetSource = "default"
    set_by: int | None = None
    set_at: datetime | None = None

    def seed_for(self, user_id: int) -> int | None:
        """The seed for this member's job; None means draw a fresh random one."""
        if self.seed_policy == "fixed":
            return self.seed
        if self.seed_policy == "per_user" and self.seed is not None:
            # Stable across restarts and processes (unlike hash()), different for every member.
            digest = hashlib.blake2b(f"{self.seed}:{user_id}".encode(), digest_size=4).digest()
            return int.from_bytes(digest, "big")
        return None


def preset_from_row(row: Any, source: PresetSource) -> ResolvedPreset:
    """A stored preset or override row (or a row of the resolution query) as the look it holds."""
    return ResolvedPreset(
        style=row.style,
        background=row.background,
        framing=row.framing,
        seed_policy=row.seed_policy,
        seed=row.seed,
        **{name: getattr(row, name) for name in names(RoomOptions)},
        source=source,
        set_by=row.set_by,
        set_at=row.set_at,
    )


def new_preset(
    style: str,
    background: str | None,
    framing: str | None,
    seed_policy: str,
    seed: int | None,
    *,
    set_by: int,
    clock: Callable[[], datetime],
    source: PresetSource,
    options: dict[str, Any],
) -> ResolvedPreset:
    """The look an admin asked for, cleaned and checked (`InvalidPresetValue` says what is wrong), set
    now by `clock`."""
    return ResolvedPreset(
        style=style,
        background=_touch(background, "background"),
        framing=_touch(framing, "framing"),
        seed_policy=seed_policy,  # type: ignore[arg-type]  # checked by _seed
        seed=_seed(seed_policy, seed),
        **options,
        source=source,
        set_by=set_by,
        set_at=clock(),
    )


# The refusal per field, whole sentences so each language can word them its own way.
_TOUCH_REFUSALS: Final = {
    "background": N_(
        "'{value}' is not a background MMPP can use. Write a colour or scene in English: up to {limit} "
        "letters, digits, spaces or dashes, or a colour like #1e90ff."
    ),
    "framing": N_(
        "'{value}' is not a framing MMPP can use: up to {limit} letters, digits, spaces or dashes."
    ),
}


def _touch(value: str | None, what: Literal["background", "framing"]) -> str | None:
    if value is None:
        return None
    clean = " ".join(value.split()).lower()
    if not clean:
        return None
    if not _TOUCH.fullmatch(clean):
        raise InvalidPresetValue(_TOUCH_REFUSALS[what], value=value, limit=TOUCH_LENGTH)
    return clean


def _seed(policy: str, seed: int | None) -> int | None:
    if policy not in get_args(SeedPolicy):
        raise InvalidPresetValue(
            N_("'{policy}' is not a seed policy; pick one of {choices}."),
            policy=policy, choices=", ".join(get_args(SeedPolicy)),
        )
    if policy == "random":
        return None
    if seed is None:
        # Drawn once and stored, so every member (or every job of one member) reuses it.
        return secrets.randbits(32)
    if not 0 <= seed < _UINT64_LIMIT:
        raise InvalidPresetValue(N_("The seed {seed} is out of range; use a whole number from 0 to 2^64-1."), seed=seed)
    return seed

"""The options an admin sets with `/style set`, each declared once, here.

Two kinds: `RoomOptions` go with a look (a server preset or one channel's override, so a channel may
differ from its server); `ServerOptions` hold for the whole server (one row per server that chose).
Each option is one dataclass field: its name (the column's and the attribute's), its type and default,
and in `option(...)` its SQL column, its `/style set` parameter and description, and how `/style show`
words it. From these follow the models' columns (`models.py`), the repository's reads and writes,
`/style set`'s parameters and merge (an option left empty keeps what was set), and `/style show`.

Adding an option: a field here, and a migration adding its column (`tests/db/test_migrations.py`
fails until the migration creates what the models declare).

Words here are catalogue ids (`N_`; `NAME_` for a parameter name); the bot translates them where an
admin reads them. Nothing here imports discord: the CLI and the migrations read this module too.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy import Boolean, Integer
from sqlalchemy.orm import mapped_column
from sqlalchemy.sql.expression import false, true
from sqlalchemy.types import TypeEngine

from mmpp.errors import N_

if TYPE_CHECKING:
    from mmpp.settings import Settings

# CANDIDATES' and `/style set candidates:`'s limit (the remote protocol refuses more; see MAX_TAKES there).
MAX_TAKES: Final = 4


def NAME_(name: str) -> str:  # spelled like N_: the catalogue scan (tests/bot/test_catalogue.py) finds both
    """Marks a command option's name for the catalogues (their `name` context); returns it unchanged."""
    return name


@dataclass(frozen=True)
class Option:
    """How one option is stored, set and shown (its name, type and default are its field's)."""

    column: type[TypeEngine[Any]]
    parameter: str  # `/style set`'s option
    describe: str  # that option's description
    label: str  # `/style show`'s field
    # `/style show`'s wording of each value; None: the value as it is.
    words: Mapping[Any, str] | None = None
    # What rows written before the option's migration read (the migration says the same).
    server_default: Any = None
    # For whole numbers: the lowest and highest `/style set` accepts.
    limits: tuple[int, int] | None = None
    # The operator's ceiling over it (a `Settings` field): for a number, the most a server may choose;
    # for a switch, whether a server may move it off its default. None: admins choose freely.
    ceiling: str | None = None


def option(default: Any, **how: Any) -> Any:
    return field(default=default, metadata={"option": Option(**how)})


YES_NO: Final = {True: N_("yes"), False: N_("no")}


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomOptions:
    """Per server preset or channel override. Defaults: the look before any admin chose."""

    # One look until an admin chooses otherwise: a room's portraits match from the start.
    allow_member_choice: bool = option(
        False, column=Boolean, parameter=NAME_("allow_member_choice"),
        describe=N_("Let members pick another style when they make a portrait"),
        label=N_("Members may pick a style"), words=YES_NO,
    )
    # Portraits here are redrawn until face matching cannot tie them to the selfie (inference/queue/unlinkable.py).
    unlinkable: bool = option(
        True, column=Boolean, server_default=true(), parameter=NAME_("unlinkable"), ceiling="servers_may_disable_guard",
        describe=N_("Redraw portraits that face matching could tie to the member's photo (default: on)"),
        label=N_("Unlinkable portraits"),
        words={
            True: N_("on: a portrait face matching could tie to the photo is redrawn"),
            False: N_("off: the most likeness, even if face matching could tie a portrait to its photo"),
        },
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerOptions:
    """For the whole server. Defaults (no row): private portraits, the bot's takes, the strict check."""

    # Post every finished portrait in the channel at once, as rooms that want it public choose.
    public_by_default: bool = option(
        False, column=Boolean, server_default=false(), parameter=NAME_("public"), ceiling="servers_may_post_by_default",
        describe=N_("Whole server: post portraits in the channel at once instead of privately"),
        label=N_("Finished portraits"),
        words={
            False: N_("private until the member presses Post"),
            True: N_("posted in the channel as soon as they are drawn"),
        },
    )
    # Takes per request (1-4); None: the bot's CANDIDATES (by default 2 on a GPU, 1 on the CPU).
    candidates: int | None = option(
        None, column=Integer, parameter=NAME_("candidates"), limits=(1, MAX_TAKES), ceiling="server_max_candidates",
        describe=N_("Whole server: takes per request, shown together for the member to pick from (1-4)"),
        label=N_("Takes per request"),
    )
    # In channels Discord marks NSFW, let nudity through (the check still refuses the rest).
    relax_in_nsfw_channels: bool = option(
        False, column=Boolean, parameter=NAME_("relax_safety"), ceiling="servers_may_relax_safety",
        describe=N_("Whole server: let nudity pass the safety check in age-restricted channels"),
        label=N_("Safety check"),
        words={
            False: N_("strict everywhere"),
            True: N_(
                "relaxed in channels Discord marks age-restricted (NSFW): nudity may pass there, a picture that "
                "may show a child never does; strict in every other channel and in DMs"
            ),
        },
    )


@dataclass(frozen=True)
class Declared:
    """One declared option, as the repository, the models and the cog read it."""

    name: str
    type: Any  # the value's type, without None
    optional: bool  # None is a value it can hold (stored as NULL)
    default: Any
    how: Option


@functools.cache
def declared(options: type[RoomOptions] | type[ServerOptions]) -> tuple[Declared, ...]:
    # Read once per class: `capped` asks on every job and autocomplete keystroke, and type hints are reflection.
    hints = typing.get_type_hints(options)
    out = []
    for f in dataclasses.fields(options):
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else ()
        base = next((a for a in args if a is not type(None)), hint)
        out.append(Declared(f.name, base, type(None) in args, f.default, f.metadata["option"]))
    return tuple(out)


def names(options: type[RoomOptions] | type[ServerOptions]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(options))


def values(of: type[RoomOptions] | type[ServerOptions], options: RoomOptions | ServerOptions) -> dict[str, Any]:
    """The values of `of`'s options, by name (`options` may be a subclass, such as `ResolvedPreset`)."""
    return {name: getattr(options, name) for name in names(of)}


def columns(options: type[RoomOptions] | type[ServerOptions]) -> type:
    """A mixin with one mapped column per declared option, for the models."""
    namespace = {
        d.name: mapped_column(d.how.column, nullable=d.optional, server_default=d.how.server_default)
        for d in declared(options)
    }
    return type(f"_{options.__name__}Columns", (), namespace)


def beyond_ceiling(option: Declared, value: Any, settings: Settings) -> bool:
    """Whether `value` goes past the operator's ceiling over `option` (None, left empty, never does)."""
    if option.how.ceiling is None or value is None:
        return False
    allowed = getattr(settings, option.how.ceiling)
    if isinstance(allowed, bool):
        return not allowed and value != option.default
    return bool(value > allowed)


OptionsT = TypeVar("OptionsT", bound=RoomOptions | ServerOptions)


def capped(options: OptionsT, settings: Settings) -> OptionsT:
    """`options` as they hold under the operator's ceilings now: a number above its ceiling lowered
    to it, a switch the operator does not allow back at its default. Stored values stay as they are,
    so raising a ceiling later gives a server back what it chose."""
    of = RoomOptions if isinstance(options, RoomOptions) else ServerOptions
    changes: dict[str, Any] = {}
    for option in declared(of):
        value = getattr(options, option.name)
        if beyond_ceiling(option, value, settings):
            allowed = getattr(settings, option.how.ceiling)  # type: ignore[arg-type]
            changes[option.name] = option.default if isinstance(allowed, bool) else allowed
    return dataclasses.replace(options, **changes) if changes else options

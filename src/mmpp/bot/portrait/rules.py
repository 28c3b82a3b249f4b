"""The room's rules, checked wherever a job starts (/profile and Reroll alike): which style a member
may draw in here, how many takes a request draws, how strict the safety check is, and whether a
finished portrait goes to the channel at once.

A Reroll button carries the style it was drawn in, and may be pressed long after an admin changed
the room's style or hid that one, so the button's style goes through the same rules as a fresh pick.
Names a member sees in an answer are only the styles this server shows them.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from mmpp.bot.db import ResolvedPreset, StyleHidden
from mmpp.bot.db.options import MAX_TAKES, ServerOptions, capped
from mmpp.bot.services import Services, services_of
from mmpp.bot.words.i18n import Where
from mmpp.bot.words.markup import shortened
from mmpp.bot.words.style_words import title_of
from mmpp.errors import N_, UserFacingError
from mmpp.settings import Settings

if TYPE_CHECKING:
    from mmpp.bot.stores import DrawnUnder
    from mmpp.inference.generation import SafetyLevel
    from mmpp.inference.queue import QueueFront


class StyleNoLongerHere(UserFacingError):
    code = "style_no_longer_here"


class StyleNotHere(UserFacingError):
    """A style this room does not offer, worded with the ones it does (the engine's `UnknownStyleError`
    names every style; a member hears only this server's)."""

    code = "unknown_style"


def style_title(services: Services, style: str, where: Where) -> str:
    """The style's title in the language of `where` (an old built-in name's too); its id where the
    catalogue no longer has it."""
    catalog = services.queue.catalog
    return title_of(catalog.get(style).definition, where) if catalog.canonical(style) in catalog else style


async def room_preset(services: Services, interaction: discord.Interaction) -> ResolvedPreset:
    """The look for a portrait made here. Where only the member installed the bot (a server it is not
    in), that server's stored preset if its admins ever chose one, else the default style with any
    published style allowed: nobody there could have chosen one look."""
    preset = capped(await services.repo.resolve(interaction.guild_id, interaction.channel_id), services.settings)
    if interaction.guild_id is not None and not interaction.is_guild_integration() and preset.source == "default":
        return dataclasses.replace(preset, allow_member_choice=True)
    return preset


async def server_options(services: Services, guild_id: int) -> ServerOptions:
    """The server's own options as they hold now, under the operator's ceilings."""
    return capped(await services.repo.server_options(guild_id), services.settings)


async def shown_styles(services: Services, guild_id: int | None) -> list[str]:
    """Published styles the queue can draw that this server has not hidden (all of them in DMs)."""
    listings = await services.repo.list_styles(guild_id)
    return [s.name for s in listings if s.enabled and s.name in services.queue.catalog]


async def check_style_allowed(
    services: Services, guild_id: int | None, preset: ResolvedPreset, style: str, *, reroll: bool = False,
    where: Where = None,
) -> None:
    """Raise a one-line answer unless `style` may be drawn where `preset` applies. The room's own
    style is already checked by `resolve` (published, shown here)."""
    if style == preset.style:
        return
    if not preset.allow_member_choice:
        # Only a Reroll gets here: /profile refuses a pick before it asks (see `choose_style`).
        raise StyleNoLongerHere(
            N_("Everyone here now gets the same style ({title}). "
               "Run {profile_command} again to get a portrait in the style used here."),
            title=style_title(services, preset.style, where),
        )
    shown = await shown_styles(services, guild_id)
    if style in shown:
        return
    if reroll and style not in services.queue.catalog:
        # Removed from the bot since the button was made: no title is left to name it by.
        raise StyleNoLongerHere(
            N_("That style isn't available any more. "
               "Run {profile_command} again to get a portrait in the style used here.")
        )
    if reroll:
        raise StyleNoLongerHere(
            N_("The {title} style isn't available here any more. "
               "Run {profile_command} again to get a portrait in the style used here."),
            title=style_title(services, style, where),
        )
    if style in services.queue.catalog and guild_id is not None:
        raise StyleHidden(style, title=style_title(services, style, where))
    names = ", ".join(style_title(services, name, where) for name in shown) or "-"
    # Not echoed: what autocomplete sent is a style's id (one removed since the member picked it).
    raise StyleNotHere(N_("I can't find that style here. Styles you can pick here: {names}."), names=names)


# Discord refuses a whole autocomplete answer where one choice's name is over 100 characters, and a
# style's title has no length limit of its own (style.json is the operator's).
CHOICE_NAME_LENGTH = 100


def choice(title: str, value: str) -> app_commands.Choice[str]:
    """An autocomplete choice showing `title`, cut short to what Discord accepts."""
    return app_commands.Choice(name=shortened(title, CHOICE_NAME_LENGTH), value=value)


async def style_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """Only what the member may pick: nothing where the room gives everyone one look."""
    services = services_of(interaction)
    if not (await room_preset(services, interaction)).allow_member_choice:
        return []
    current = current.lower()
    choices = []
    for name in await shown_styles(services, interaction.guild_id):
        title = title_of(services.queue.catalog.get(name).definition, interaction)
        if current in name or current in title.lower():
            choices.append(choice(title, name))
    return choices[:25]


def default_takes(settings: Settings, queue: QueueFront) -> int:
    """How many takes one request draws where the server did not choose (`/style set candidates:`):
    CANDIDATES where set, else 2 where the queue draws on a GPU (a second take costs little in the
    same batch) and 1 on the CPU (where each take costs its full time)."""
    if settings.candidates is not None:
        return settings.candidates
    return 2 if queue.on_gpu else 1


def takes_under(services: Services, options: ServerOptions) -> int:
    """The takes a request draws under a server's options (left unset: the bot's)."""
    if options.candidates is not None:
        return max(1, min(MAX_TAKES, options.candidates))
    return default_takes(services.settings, services.queue)


async def takes_for(services: Services, guild_id: int | None) -> int:
    """The takes a member's request draws here (a DM or a server that did not choose: the bot's)."""
    if guild_id is None:
        return default_takes(services.settings, services.queue)
    return takes_under(services, await server_options(services, guild_id))


async def safety_level(services: Services, interaction: discord.Interaction) -> SafetyLevel:
    """Strict, unless the portrait goes to a server channel that Discord marks NSFW (a thread
    follows its parent) and that server's admin turned on `/style nsfw relax:True`. DMs are strict."""
    if interaction.guild_id is None:
        return "strict"
    is_nsfw = getattr(interaction.channel, "is_nsfw", None)
    if not callable(is_nsfw) or not is_nsfw():
        return "strict"
    options = await server_options(services, interaction.guild_id)
    return "relaxed" if options.relax_in_nsfw_channels else "strict"


async def public_by_default(services: Services, interaction: discord.Interaction) -> bool:
    """Whether this server chose that portraits go to the channel at once (`/style set public:`)."""
    if interaction.guild_id is None:
        return False
    return (await server_options(services, interaction.guild_id)).public_by_default


def guard_required(preset: ResolvedPreset) -> bool:
    """Whether every portrait here must pass through the unlinkable guard: the room keeps it on and
    its members may not turn it off for themselves (`/profile unlinkable:`)."""
    return preset.unlinkable and not preset.allow_member_choice


class NotForThisRoom(UserFacingError):
    code = "not_for_this_room"


async def check_room(services: Services, interaction: discord.Interaction, style: str, drawn: DrawnUnder) -> None:
    """Raise one line unless a set drawn under `drawn` may be posted where `interaction` is now: its style
    offered here (not hidden, not another than a one-look room's), the check it passed at least as strict
    as this channel's, and the unlinkable guard run where this room requires it. A portrait the guard ran
    on but could not make unlinkable may be posted: the member was told, and it is theirs to decide."""
    preset = await room_preset(services, interaction)
    style = services.queue.catalog.canonical(style)
    title = style_title(services, style, interaction)
    if style != preset.style and not preset.allow_member_choice:
        raise NotForThisRoom(
            N_("This channel gives everyone the same style ({room}), so I can't post a {title} portrait here."),
            room=style_title(services, preset.style, interaction), title=title,
        )
    if style != preset.style and style not in await shown_styles(services, interaction.guild_id):
        raise NotForThisRoom(N_("The {title} style isn't offered here, so I can't post that portrait here."),
                             title=title)
    if drawn.safety == "relaxed" and await safety_level(services, interaction) == "strict":
        raise NotForThisRoom(
            N_("That portrait passed the relaxed safety check of an age-restricted channel, so I can't post it here.")
        )
    if not drawn.guarded and guard_required(preset):
        raise NotForThisRoom(
            N_("That portrait was drawn with the unlinkable guard off, and this channel requires it, "
               "so I can't post it here.")
        )


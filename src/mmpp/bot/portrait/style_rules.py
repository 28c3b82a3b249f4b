"""Which style a member may draw in here, checked wherever a job starts: /profile and Reroll alike.

A Reroll button carries the style it was drawn in, and may be pressed long after an admin changed
the room's style or hid that one, so the button's style goes through the same rules as a fresh pick.
Names a member sees in an answer are only the styles this server shows them.
"""

from __future__ import annotations

import dataclasses

import discord

from mmpp.bot.db import ResolvedPreset, StyleHidden
from mmpp.bot.services import Services
from mmpp.errors import N_, UserFacingError


class StyleNoLongerHere(UserFacingError):
    code = "style_no_longer_here"


class StyleNotHere(UserFacingError):
    """A style this room does not offer, worded with the ones it does (the engine's `UnknownStyleError`
    names every style; a member hears only this server's)."""

    code = "unknown_style"


async def room_preset(services: Services, interaction: discord.Interaction) -> ResolvedPreset:
    """The look for a portrait made here. Where only the member installed the bot (a server it is not
    in), that server's stored preset if its admins ever chose one, else the default style with any
    published style allowed: nobody there could have chosen one look."""
    preset = await services.repo.resolve(interaction.guild_id, interaction.channel_id)
    if interaction.guild_id is not None and not interaction.is_guild_integration() and preset.source == "default":
        return dataclasses.replace(preset, allow_member_choice=True)
    return preset


async def shown_styles(services: Services, guild_id: int | None) -> list[str]:
    """Published styles the engine can draw that this server has not hidden (all of them in DMs)."""
    listings = await services.repo.list_styles(guild_id)
    return [s.name for s in listings if s.enabled and s.name in services.engine.catalog]


def _title(services: Services, style: str) -> str:
    catalog = services.engine.catalog
    return catalog.get(style).definition.title if style in catalog else style


async def check_style_allowed(
    services: Services, guild_id: int | None, preset: ResolvedPreset, style: str, *, reroll: bool = False
) -> None:
    """Raise a one-line answer unless `style` may be drawn where `preset` applies. The room's own
    style is already checked by `resolve` (published, shown here)."""
    if style == preset.style:
        return
    if not preset.allow_member_choice:
        # Only a Reroll gets here: /profile refuses a pick before it asks (see `choose_style`).
        raise StyleNoLongerHere(
            N_("This room now gives everyone the same style ({title}). "
               "Run /profile again to get a portrait in this room's style."),
            title=_title(services, preset.style),
        )
    shown = await shown_styles(services, guild_id)
    if style in shown:
        return
    if reroll:
        raise StyleNoLongerHere(
            N_("The {title} style isn't available here any more. "
               "Run /profile again to get a portrait in this room's style."),
            title=_title(services, style),
        )
    if style in services.engine.catalog and guild_id is not None:
        raise StyleHidden(style)
    names = ", ".join(f"{_title(services, name)} (`{name}`)" for name in shown) or "-"
    raise StyleNotHere(
        N_("There is no style called '{style}'. Styles you can pick here: {names}."), style=style, names=names
    )

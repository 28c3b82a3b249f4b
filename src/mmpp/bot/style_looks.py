"""How `/style show` and `/style set` word a look for an admin: the style by its title, each option
as declared in `bot/db/options.py`, the server-wide choices and the channels with their own style."""

from __future__ import annotations

import discord

from mmpp.bot.db import ResolvedPreset
from mmpp.bot.db.options import Declared, RoomOptions, ServerOptions, declared
from mmpp.bot.portrait.rules import server_options, style_title, takes_under
from mmpp.bot.services import Services
from mmpp.bot.words import background_labels
from mmpp.bot.words.i18n import N_, tr
from mmpp.bot.words.markup import EMBED_FIELD_VALUE_LENGTH, EMBED_TITLE_LENGTH, lines_within, shortened

SEED_POLICY_WORDS = {
    "random": N_("a new look every time"),
    "fixed": N_("the same seed for everyone"),
    "per_user": N_("each member always gets the same seed"),
}


def worded(interaction: discord.Interaction, option: Declared, options: RoomOptions | ServerOptions) -> str:
    """`/style show`'s words for an option's value (as declared), in the admin's language."""
    value = getattr(options, option.name)
    words = option.how.words
    return tr(interaction, words[value]) if words is not None else str(value)



def describe_preset(
    interaction: discord.Interaction, services: Services, preset: ResolvedPreset, where: str
) -> discord.Embed:
    title = style_title(services, preset.style, interaction)
    embed = discord.Embed(title=shortened(f"{where}: {title}", EMBED_TITLE_LENGTH), colour=discord.Colour.blurple())
    # By its title: /style set and /style available pick a style by title too, so no admin types its id.
    embed.add_field(name=tr(interaction, "Style"), value=shortened(title, EMBED_FIELD_VALUE_LENGTH))
    background = background_labels.label(preset.background, interaction) if preset.background else None
    embed.add_field(name=tr(interaction, "Background"), value=background or tr(interaction, "the style's own"))
    embed.add_field(name=tr(interaction, "Framing"), value=preset.framing or tr(interaction, "the style's own"))
    embed.add_field(name=tr(interaction, "Seeds"), value=tr(interaction, SEED_POLICY_WORDS[preset.seed_policy]))
    for option in declared(RoomOptions):
        embed.add_field(name=tr(interaction, option.how.label), value=worded(interaction, option, preset))
    source = {
        "channel": N_("From this channel's override"), "server": N_("From the server preset"),
        "default": N_("From the bot's default"),
    }
    if preset.set_by:
        embed.add_field(name=tr(interaction, "Set by"), value=f"<@{preset.set_by}>")
    embed.set_footer(text=tr(interaction, source[preset.source]))
    if preset.set_at:
        embed.timestamp = preset.set_at
    return embed


async def add_server_choices(interaction: discord.Interaction, services: Services, embed: discord.Embed) -> None:
    """The server-wide options of `/style set` (`ServerOptions`), each as members meet it."""
    guild_id = interaction.guild_id or 0
    chosen = await server_options(services, guild_id)
    for option in declared(ServerOptions):
        value = worded(interaction, option, chosen)
        if option.name == "candidates":
            value = str(takes_under(services, chosen))  # left unset: the bot's own number
        elif option.name == "relax_in_nsfw_channels" and services.settings.sources.safety_checker is None:
            value += " " + tr(interaction, "(This bot's operator has turned the check off entirely.)")
        embed.add_field(name=tr(interaction, option.how.label), value=value, inline=False)


def add_channel_overrides(
    interaction: discord.Interaction, services: Services, embed: discord.Embed, overrides: dict[int, ResolvedPreset]
) -> None:
    """The channels with a style of their own, each by its title."""
    if not overrides:
        return
    # Titles have no length limit of their own: each is cut, and the list stops where the field must.
    lines = [f"<#{cid}>: {shortened(style_title(services, o.style, interaction), 60)}"
             for cid, o in [*overrides.items()][:20]]
    embed.add_field(name=tr(interaction, "Channels with their own style"),
                    value=lines_within(lines, EMBED_FIELD_VALUE_LENGTH), inline=False)

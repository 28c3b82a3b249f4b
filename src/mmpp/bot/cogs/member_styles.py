"""/styles: every member may see the styles they can get here, with a sample of each."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from mmpp.bot.contexts import EVERYWHERE_KW, INSTALLS_KW
from mmpp.bot.portrait.rules import room_preset, shown_styles, style_title
from mmpp.bot.services import services_of
from mmpp.bot.style_cards import send_style_cards
from mmpp.bot.words.i18n import name_str, text_str, tr


class MemberStylesCog(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(name=name_str("styles"), description=text_str("See the styles you can get here"))
    @app_commands.allowed_contexts(**EVERYWHERE_KW)
    @app_commands.allowed_installs(**INSTALLS_KW)
    async def styles(self, interaction: discord.Interaction) -> None:
        # Acknowledged before any database read or sample decoding: Discord allows 3 s.
        await interaction.response.defer(ephemeral=True, thinking=True)
        services = services_of(interaction)
        preset = await room_preset(services, interaction)
        if not preset.allow_member_choice:
            title = style_title(services, preset.style, interaction)
            note = tr(interaction, "Everyone here gets the same style, **{title}**, so portraits match.", title=title)
            await send_style_cards(interaction, services, [(preset.style, True)], admin=False, note=note)
            return
        names = await shown_styles(services, interaction.guild_id)
        note = tr(interaction, "Pick one with the style option of {profile_command}.")
        await send_style_cards(interaction, services, [(n, True) for n in names], admin=False, note=note)

"""/queue and /cancel: where a member's portrait is, and a way to stop it."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from mmpp.bot.contexts import EVERYWHERE_KW, INSTALLS_KW
from mmpp.bot.services import services_of
from mmpp.bot.words.i18n import name_str, text_str, tr
from mmpp.bot.words.markup import discord_time


class QueueCog(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(name=name_str("queue"), description=text_str("Where is my portrait?"))
    @app_commands.allowed_contexts(**EVERYWHERE_KW)
    @app_commands.allowed_installs(**INSTALLS_KW)
    async def queue(self, interaction: discord.Interaction) -> None:
        queue = services_of(interaction).queue
        position = queue.position(interaction.user.id)
        if position == 0:
            text = tr(interaction, "Your portrait is being drawn right now.")
        elif position is not None:
            text = tr(interaction, "You're number {position} in line (ready {when}).", position=position,
                      when=discord_time(queue.estimated_wait(position)))
        else:
            text = tr(interaction, "You have no portrait on the way. {count} waiting in all.", count=queue.depth)
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(name=name_str("cancel"), description=text_str("Stop the portrait you asked for"))
    @app_commands.allowed_contexts(**EVERYWHERE_KW)
    @app_commands.allowed_installs(**INSTALLS_KW)
    async def cancel(self, interaction: discord.Interaction) -> None:
        services = services_of(interaction)
        if services.queue.cancel_user(interaction.user.id):
            text = tr(interaction, "Cancelled. Run {profile_command} again whenever you like.")
        elif services.admissions.cancel(interaction.user.id):
            # Still being downloaded or read: it stops before it reaches the queue.
            text = tr(interaction, "Cancelled. Run {profile_command} again whenever you like.")
        else:
            text = tr(interaction, "You have no portrait on the way.")
        await interaction.response.send_message(text, ephemeral=True)

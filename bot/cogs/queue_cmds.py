"""/queue and /cancel: where a member's portrait is, and a way to stop it."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.services import services_of
from inference.queue import describe_wait


class QueueCog(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(name="queue", description="Where is my portrait?")
    async def queue(self, interaction: discord.Interaction) -> None:
        queue = services_of(interaction).queue
        position = queue.position(interaction.user.id)
        if position == 0:
            text = "Your portrait is being drawn right now."
        elif position is not None:
            text = f"You're number {position} in line ({describe_wait(queue.estimated_wait(position))} to go)."
        else:
            text = f"You have no portrait on the way. {queue.depth} waiting in all."
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(name="cancel", description="Stop the portrait you asked for")
    async def cancel(self, interaction: discord.Interaction) -> None:
        services = services_of(interaction)
        if services.queue.cancel_user(interaction.user.id):
            text = "Cancelled. Run /profile again whenever you like."
        elif interaction.user.id in services.preparing:
            # Still being downloaded or read: it stops before it reaches the queue.
            services.cancel_requests.add(interaction.user.id)
            text = "Cancelled. Run /profile again whenever you like."
        else:
            text = "You have no portrait on the way."
        await interaction.response.send_message(text, ephemeral=True)

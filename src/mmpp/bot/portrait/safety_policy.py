"""How strictly a portrait is checked before it is posted where this interaction came from."""

from __future__ import annotations

import discord

from mmpp.bot.db.safety import ServerSafetyStore
from mmpp.bot.services import Services
from mmpp.inference.generation import SafetyLevel


async def safety_level(services: Services, interaction: discord.Interaction) -> SafetyLevel:
    """Strict, unless the portrait goes to a server channel that Discord marks NSFW (a thread
    follows its parent) and that server's admin turned on `/style nsfw relax:True`. DMs are strict."""
    if interaction.guild_id is None:
        return "strict"
    is_nsfw = getattr(interaction.channel, "is_nsfw", None)
    if not callable(is_nsfw) or not is_nsfw():
        return "strict"
    store = ServerSafetyStore(services.database.sessions)
    return "relaxed" if await store.relaxed_in_nsfw_channels(interaction.guild_id) else "strict"

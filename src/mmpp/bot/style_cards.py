"""Styles shown as cards (an embed with its sample each): for admins' `/style list` and members' `/styles`."""

from __future__ import annotations

import asyncio
import io

import discord

from mmpp.bot.services import Services
from mmpp.bot.words.i18n import tr
from mmpp.bot.words.markup import (
    EMBED_DESCRIPTION_LENGTH,
    EMBED_TITLE_LENGTH,
    EMBEDS_TOTAL_LENGTH,
    shortened,
)
from mmpp.bot.words.style_words import description_of, title_of


async def send_style_cards(
    interaction: discord.Interaction, services: Services, styles: list[tuple[str, bool]], *, admin: bool,
    note: str | None = None,
) -> None:
    """Up to ten styles as embeds with their samples (decoded and re-encoded: only pixels leave)."""
    # Acknowledged first: reading ten sample pictures may take longer than Discord's 3 s.
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=True, thinking=True)
    embeds, files = [], []
    for name, enabled in styles[:10]:  # Discord allows ten embeds per message
        if name not in services.queue.catalog:
            continue
        style = services.queue.catalog.get(name)
        hidden, builtin = admin and not enabled, admin and style.builtin
        # A long title is cut before its marks are added, so an admin still sees them.
        room = EMBED_TITLE_LENGTH
        room -= len(tr(interaction, "{title} (hidden on this server)", title="")) if hidden else 0
        room -= len(tr(interaction, "{title} (built in)", title="")) if builtin else 0
        title = shortened(title_of(style.definition, interaction), room)
        if hidden:
            title = tr(interaction, "{title} (hidden on this server)", title=title)
        if builtin:
            title = tr(interaction, "{title} (built in)", title=title)
        embed = discord.Embed(
            title=title, description=description_of(style.definition, interaction) or None,
            colour=discord.Colour.green() if enabled else discord.Colour.dark_grey(),
        )
        sample = await asyncio.to_thread(style.sample_png)
        if sample is not None:
            filename = f"sample-{style.name}.png"
            files.append(discord.File(io.BytesIO(sample), filename=filename))
            embed.set_thumbnail(url=f"attachment://{filename}")
        embeds.append(embed)
    if not embeds:
        await interaction.followup.send(tr(interaction, "No styles are published yet."), ephemeral=True)
        return
    fit_descriptions(embeds)
    await interaction.followup.send(note or discord.utils.MISSING, embeds=embeds, files=files, ephemeral=True)


def fit_descriptions(embeds: list[discord.Embed]) -> None:
    """Descriptions cut to what Discord takes: 4096 characters each and all the embeds' texts 6000 in
    all (a style's description has no limit of its own, and one too long refuses every card)."""
    rest = sum(len(embed) - len(embed.description or "") for embed in embeds)
    share = min(EMBED_DESCRIPTION_LENGTH, max(0, (EMBEDS_TOTAL_LENGTH - rest) // len(embeds)))
    for embed in embeds:
        if embed.description and len(embed.description) > share:
            embed.description = shortened(embed.description, share) or None

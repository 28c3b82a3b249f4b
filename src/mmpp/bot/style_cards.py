"""Styles shown as cards (an embed with its sample each): for admins' `/style list` and members' `/styles`."""

from __future__ import annotations

import asyncio
import io

import discord

from mmpp.bot.services import Services
from mmpp.bot.words.i18n import tr
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
        title = title_of(style.definition, interaction)
        if admin and not enabled:
            title = tr(interaction, "{title} (hidden on this server)", title=title)
        if admin and style.builtin:
            title = tr(interaction, "{title} (built in)", title=title)
        embed = discord.Embed(
            title=title, description=description_of(style.definition, interaction) or None,
            colour=discord.Colour.green() if enabled else discord.Colour.dark_grey(),
        )
        if admin:  # the name /style set takes; a member picks by title
            embed.add_field(name=tr(interaction, "Name"), value=f"`{style.name}`")
        sample = await asyncio.to_thread(style.sample_png)
        if sample is not None:
            filename = f"sample-{style.name}.png"
            files.append(discord.File(io.BytesIO(sample), filename=filename))
            embed.set_thumbnail(url=f"attachment://{filename}")
        embeds.append(embed)
    if not embeds:
        await interaction.followup.send(tr(interaction, "No styles are published yet."), ephemeral=True)
        return
    await interaction.followup.send(note or discord.utils.MISSING, embeds=embeds, files=files, ephemeral=True)

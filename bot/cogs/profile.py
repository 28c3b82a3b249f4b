"""/profile and the "Make profile photo" user menu: a member's own portrait."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import discord
from discord import app_commands
from discord.ext import commands

from bot.db import ResolvedPreset
from bot.portrait import PortraitOrder, admission, make_portrait
from bot.replies import defer
from bot.services import Services, services_of
from bot.style_rules import check_style_allowed
from inference.loader import image_limits
from inference.preprocess import FORMATS_TEXT, LocatedFace, check_upload_size
from mmpp.errors import UserFacingError


class StyleChoiceNotAllowed(UserFacingError):
    code = "style_choice_not_allowed"


class NotYourAvatar(UserFacingError):
    code = "not_your_avatar"


def choose_unlinkable(preset: ResolvedPreset, requested: bool | None) -> bool | None:
    """The member's say on the unlinkable guard: asking for it is always fine; turning it off only
    where the room lets members choose (and in DMs)."""
    if requested is False and preset.unlinkable and not preset.allow_member_choice:
        raise StyleChoiceNotAllowed(
            "This server keeps every portrait unlinkable to its photo. Leave the unlinkable option empty."
        )
    return requested


async def choose_style(services: Services, guild_id: int | None, preset: ResolvedPreset, requested: str | None) -> str:
    """The room's style, or the member's pick where the room allows one; hidden styles are refused."""
    if requested is not None:
        requested = services.engine.catalog.canonical(requested)
    if requested is None or requested == preset.style:
        style = preset.style
    elif not preset.allow_member_choice:
        title = services.engine.catalog.get(preset.style).definition.title
        raise StyleChoiceNotAllowed(
            f"This server gives everyone the same style ({title}) so portraits match. "
            "Leave the style option empty to get it."
        )
    else:
        style = requested
    await check_style_allowed(services, guild_id, preset, style)
    return style


async def style_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    services = services_of(interaction)
    listings = await services.repo.list_styles(interaction.guild_id)
    current = current.lower()
    choices = []
    for listing in listings:
        if not listing.enabled or listing.name not in services.engine.catalog:
            continue
        title = services.engine.catalog.get(listing.name).definition.title
        if current in listing.name or current in title.lower():
            choices.append(app_commands.Choice(name=title, value=listing.name))
    return choices[:25]


def read_selfie(services: Services, url: str) -> Callable[[], Awaitable[LocatedFace]]:
    """Download (capped, CDN only) then decode and locate the face in a worker process."""

    async def source() -> LocatedFace:
        # Only a compact face crop outlives this call: not the upload, not the whole photo. The
        # slot is held until then, so uploads in memory at once are bounded bot-wide.
        async with services.downloader.slots:
            return await services.decoder.locate(await services.downloader.fetch(url))

    return source


async def start_portrait(
    interaction: discord.Interaction,
    source: discord.Attachment | discord.Asset,
    requested_style: str | None,
    unlinkable: bool | None = None,
) -> None:
    """Acknowledge first. Only checks that need nothing but memory come before it (a refusal is
    then an instant ephemeral answer); the database and the download come after."""
    services = services_of(interaction)
    if isinstance(source, discord.Attachment):
        check_upload_size(source.size, image_limits(services.settings))  # what it claims; the download checks again
    services.downloader.check(source.url)
    with admission(services, interaction.user.id):
        await defer(interaction)
        preset = await services.repo.resolve(interaction.guild_id, interaction.channel_id)
        style = await choose_style(services, interaction.guild_id, preset, requested_style)
        order = PortraitOrder(
            face=read_selfie(services, source.url), style=style, preset=preset,
            unlinkable=choose_unlinkable(preset, unlinkable),
        )
        await make_portrait(interaction, services, order)


class ProfileCog(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.avatar_menu = app_commands.ContextMenu(name="Make profile photo", callback=self.from_avatar)
        self.bot.tree.add_command(self.avatar_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.avatar_menu.name, type=self.avatar_menu.type)

    @app_commands.command(name="profile", description="Turn a selfie into a profile photo in this room's style")
    @app_commands.describe(
        selfie=f"A photo of you with your face clearly visible ({FORMATS_TEXT})",
        style="Pick a style (in DMs, or where the server lets members choose)",
        unlinkable="Off: keep more likeness, even if face matching could link the portrait to your photo",
    )
    @app_commands.autocomplete(style=style_autocomplete)
    async def profile(
        self,
        interaction: discord.Interaction,
        selfie: discord.Attachment,
        style: str | None = None,
        unlinkable: bool | None = None,
    ) -> None:
        await start_portrait(interaction, selfie, style, unlinkable)

    async def from_avatar(self, interaction: discord.Interaction, member: discord.User | discord.Member) -> None:
        if member.id != interaction.user.id:
            raise NotYourAvatar("You can only make a profile photo from your own avatar.")
        if member.avatar is None:
            raise NotYourAvatar("You don't have an avatar picture yet. Use /profile with a selfie instead.")
        await start_portrait(interaction, member.display_avatar.replace(size=1024, static_format="png"), None)

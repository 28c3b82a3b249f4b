"""/profile and the "Make profile photo" user menu: a member's own portrait."""

from __future__ import annotations

import io

import discord
from discord import app_commands
from discord.ext import commands

from mmpp.bot.contexts import ANY_INSTALL, EVERYWHERE, EVERYWHERE_KW, INSTALLS_KW
from mmpp.bot.db import ResolvedPreset
from mmpp.bot.portrait.buttons import PortraitView
from mmpp.bot.portrait.deliver import Keep, portrait_filename
from mmpp.bot.portrait.follow import make_portrait
from mmpp.bot.portrait.order import FaceSource, PortraitOrder
from mmpp.bot.portrait.rules import (
    NotForThisRoom,
    check_room,
    check_style_allowed,
    room_preset,
    style_autocomplete,
    style_title,
)
from mmpp.bot.replies import defer
from mmpp.bot.services import Services, services_of
from mmpp.bot.words.i18n import N_, Where, name_str, text_str, tr, tr_error
from mmpp.errors import UserFacingError
from mmpp.inference.model_files import image_limits
from mmpp.inference.preprocess import ImageRejected, LocatedFace, check_upload_size


class StyleChoiceNotAllowed(UserFacingError):
    code = "style_choice_not_allowed"


class NotYourAvatar(UserFacingError):
    code = "not_your_avatar"


def choose_unlinkable(preset: ResolvedPreset, requested: bool | None) -> bool | None:
    """The member's say on the unlinkable guard: asking for it is always fine; turning it off only
    where the room lets members choose (and in DMs)."""
    if requested is False and preset.unlinkable and not preset.allow_member_choice:
        raise StyleChoiceNotAllowed(
            N_("This server keeps every portrait unlinkable to its photo. Leave the unlinkable option empty.")
        )
    return requested


async def choose_style(
    services: Services, guild_id: int | None, preset: ResolvedPreset, requested: str | None, where: Where = None
) -> str:
    """The style used here, or the member's pick where that is allowed; hidden styles are refused (answers
    worded for `where`)."""
    if requested is not None:
        requested = services.queue.catalog.canonical(requested)
    if requested is None or requested == preset.style:
        style = preset.style
    elif not preset.allow_member_choice:
        title = style_title(services, preset.style, where)
        raise StyleChoiceNotAllowed(
            N_("This server gives everyone the same style ({title}) so portraits match. "
               "Leave the style option empty to get it."),
            title=title,
        )
    else:
        style = requested
    await check_style_allowed(services, guild_id, preset, style, where=where)
    return style


def read_selfie(services: Services, url: str, user_id: int) -> FaceSource:
    """Download (capped, CDN only) then decode and locate the face in a worker process. A picture
    that cannot be used counts against the member (`mmpp.bot.uploads.refusals`)."""

    async def source() -> LocatedFace:
        # Only a compact face crop outlives this call: not the upload, not the whole photo. The
        # slot is held until then, so uploads in memory at once are bounded bot-wide.
        async with services.downloader.slots:
            try:
                return await services.decoder.locate(await services.downloader.fetch(url))
            except ImageRejected:
                services.refused_uploads.refused(user_id)
                raise

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
    services.refused_uploads.check(interaction.user.id)
    with services.admissions.admit(interaction.user.id):
        await defer(interaction)
        preset = await room_preset(services, interaction)
        style = await choose_style(services, interaction.guild_id, preset, requested_style, interaction)
        order = PortraitOrder(
            face=read_selfie(services, source.url, interaction.user.id), style=style, preset=preset,
            unlinkable=choose_unlinkable(preset, unlinkable), offer=PortraitView,
        )
        await make_portrait(interaction, services, order)


class ProfileCog(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.avatar_menu = app_commands.ContextMenu(
            name=text_str("Make profile photo"), callback=self.from_avatar,
            allowed_contexts=EVERYWHERE, allowed_installs=ANY_INSTALL,
        )
        self.bot.tree.add_command(self.avatar_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.avatar_menu.name, type=self.avatar_menu.type)

    @app_commands.command(
        name=name_str("profile"), description=text_str("Turn a selfie into a profile photo in the style used here")
    )
    @app_commands.rename(selfie=name_str("selfie"), style=name_str("style"), unlinkable=name_str("unlinkable"))
    @app_commands.describe(
        selfie=text_str("A photo of you with your face clearly visible (JPEG, PNG, WebP or GIF)"),
        style=text_str("Pick a style (in DMs, or where the server lets members choose)"),
        unlinkable=text_str("Off: keep more likeness, even if face matching could link the portrait to your photo"),
    )
    @app_commands.autocomplete(style=style_autocomplete)
    @app_commands.allowed_contexts(**EVERYWHERE_KW)
    @app_commands.allowed_installs(**INSTALLS_KW)
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
            raise NotYourAvatar(N_("You can only make a profile photo from your own avatar."))
        if member.avatar is None:
            raise NotYourAvatar(
                N_("You don't have an avatar picture yet. Use {profile_command} with a selfie instead.")
            )
        await start_portrait(interaction, member.display_avatar.replace(size=1024, static_format="png"), None)

    @app_commands.command(name=name_str("last"), description=text_str("Show your latest portrait again, privately"))
    @app_commands.allowed_contexts(**EVERYWHERE_KW)
    @app_commands.allowed_installs(**INSTALLS_KW)
    async def last(self, interaction: discord.Interaction) -> None:
        """The newest portrait kept in memory (for when neither the reply nor a DM reached the member)."""
        services = services_of(interaction)
        found = services.results.latest(interaction.user.id)
        if found is None:
            minutes = round(services.settings.reroll_ttl_s / 60)
            await interaction.response.send_message(
                tr(interaction, "I have no portrait of yours right now: I keep them only {minutes} minutes, "
                   "in memory.", minutes=minutes),
                ephemeral=True,
            )
            return
        result_token, entry = found
        title = style_title(services, entry.style, interaction)
        files = [discord.File(io.BytesIO(png), portrait_filename(entry.style, i)) for i, png in enumerate(entry.pngs)]
        # Post only: what /last keeps has no face to reroll from. And only where the rules it was drawn
        # under hold in this room now; elsewhere the member reads why instead.
        try:
            await check_room(services, interaction, entry.style, entry.drawn)
        except NotForThisRoom as refusal:
            content = tr(interaction, "Your latest **{title}** portrait. Only you can see it.", title=title)
            await interaction.response.send_message(
                content + "\n" + tr_error(interaction, refusal), files=files, ephemeral=True
            )
            return
        keep = Keep(result_token, entry.drawn, read_back=False)
        view = PortraitView(interaction, interaction.user.id, entry.style, keep, len(entry.pngs))
        await interaction.response.send_message(
            tr(interaction, "Your latest **{title}** portrait. Only you can see it: press **Post** to show it "
               "in the channel.", title=title),
            files=files, view=view, ephemeral=True,
        )

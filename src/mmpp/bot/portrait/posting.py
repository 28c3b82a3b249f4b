"""Showing a finished portrait to the room: the member's own choice (Post), or the server's ("public
by default"); and Delete. Kept apart from the portrait flow, which only builds these buttons."""

from __future__ import annotations

import io

import discord

from mmpp.bot.replies import answer_error
from mmpp.bot.services import Services, services_of
from mmpp.bot.words.i18n import N_, match, tr
from mmpp.errors import UserFacingError


def portrait_filename(style: str, index: int = 0) -> str:
    return f"portrait-{style}.png" if index == 0 else f"portrait-{style}-{index + 1}.png"


def public_line(interaction: discord.Interaction, title: str) -> str:
    """What the room reads with a posted portrait: in the server's language, the room's own."""
    where: str | None = None
    if interaction.guild_locale is not None:
        where = match(interaction.guild_locale)
    return tr(where or interaction, "{member} posted a new **{title}** profile photo.",
              member=interaction.user.mention, title=title)


def post_label(where: discord.Interaction, index: int, count: int) -> str:
    return tr(where, "Post") if count == 1 else tr(where, "Post #{n}", n=index + 1)


class NotYours(UserFacingError):
    code = "not_yours"


DELETE_ID = r"mmpp:delete:(?P<owner>\d+):(?P<token>[\w-]+)(?::(?P<kept>[\w-]+))?"
POST_ID = r"mmpp:post:(?P<owner>\d+):(?P<style>[a-z0-9-]+):(?P<kept>[\w-]+):(?P<index>\d)"


class PostButton(discord.ui.DynamicItem[discord.ui.Button], template=POST_ID):
    """Publishes one picture in the channel, with a short public line: the member's own choice."""

    def __init__(self, owner_id: int, style: str, kept: str, index: int, *, label: str = "Post") -> None:
        super().__init__(
            discord.ui.Button(
                label=label, emoji="📣", style=discord.ButtonStyle.primary,
                custom_id=f"mmpp:post:{owner_id}:{style}:{kept}:{index}",
            )
        )
        self.owner_id, self.style, self.kept, self.index = owner_id, style, kept, index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: object
    ) -> PostButton:
        groups = match.groupdict()  # type: ignore[attr-defined]
        return cls(int(groups["owner"]), groups["style"], groups["kept"], int(groups["index"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self.post(interaction)
        except Exception as exc:
            await answer_error(interaction, exc)

    async def post(self, interaction: discord.Interaction) -> None:
        services = services_of(interaction)
        if interaction.user.id != self.owner_id:
            raise NotYours(N_("Only the member who made this portrait can post it."))
        entry = services.results.get(self.kept, self.owner_id)
        if entry is not None and self.index in entry.posted:
            raise NotYours(N_("You've already posted this one."))
        style = self.style
        if entry is not None and self.index < len(entry.pngs):
            png = entry.pngs[self.index]
        else:
            # Past the memory limits: the picture is still on the message the button belongs to.
            png = await png_from_message(services, interaction, portrait_filename(style, self.index))
        title = services.engine.catalog.get(style).definition.title if style in services.engine.catalog else style
        # A new public message in the channel, answering the click: the room sees it from here on.
        await interaction.response.send_message(
            public_line(interaction, title), file=discord.File(io.BytesIO(png), portrait_filename(style)),
            allowed_mentions=discord.AllowedMentions.none(), ephemeral=False,
        )
        if entry is not None:
            entry.posted.add(self.index)


class PortraitGone(UserFacingError):
    code = "portrait_gone"


async def png_from_message(services: Services, interaction: discord.Interaction, filename: str) -> bytes:
    """The picture from the message's own attachment (Discord's CDN only, size-capped)."""
    for attachment in interaction.message.attachments if interaction.message else []:
        if attachment.filename == filename:
            async with services.downloader.slots:
                return await services.downloader.fetch(attachment.url)
    raise PortraitGone(N_("I no longer have that portrait. Run /profile again."))


class DeleteButton(discord.ui.DynamicItem[discord.ui.Button], template=DELETE_ID):
    def __init__(self, owner_id: int, token: str, kept: str | None = None, *, label: str = "Delete") -> None:
        suffix = f":{kept}" if kept else ""
        super().__init__(
            discord.ui.Button(
                label=label, emoji="🗑️", style=discord.ButtonStyle.secondary,
                custom_id=f"mmpp:delete:{owner_id}:{token}{suffix}",
            )
        )
        self.owner_id, self.token, self.kept = owner_id, token, kept

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: object
    ) -> DeleteButton:
        groups = match.groupdict()  # type: ignore[attr-defined]
        return cls(int(groups["owner"]), groups["token"], groups.get("kept"))

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            if interaction.user.id != self.owner_id:
                raise NotYours(N_("Only the member who made this portrait can delete it."))
            services = services_of(interaction)
            services.faces.forget(self.token)
            if self.kept:
                services.results.forget(self.kept)
            await interaction.response.defer()
            await interaction.delete_original_response()
        except Exception as exc:
            await answer_error(interaction, exc)

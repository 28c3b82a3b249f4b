"""The buttons on a finished portrait: Post (one per picture), Reroll (same face and style, a new
set) and Delete, each for the portrait's owner alone (`OwnedButton` checks that, once).

Their custom ids carry all they need, so buttons keep working after a restart; an id format only
ever gains optional endings (buttons already posted must keep working; a Post id without its rules
posts only while its set is still kept).
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, ClassVar

import discord

from mmpp.bot.portrait.deliver import Keep, portrait_filename, public_line
from mmpp.bot.portrait.follow import make_portrait
from mmpp.bot.portrait.order import PortraitOrder, face_in_hand, new_seed
from mmpp.bot.portrait.rules import check_room, check_style_allowed, room_preset
from mmpp.bot.replies import answer_error, defer
from mmpp.bot.services import Services, services_of
from mmpp.bot.stores import DrawnUnder
from mmpp.bot.words.i18n import N_, tr
from mmpp.errors import UserFacingError

if TYPE_CHECKING:
    from mmpp.inference.generation import SafetyLevel

# A trailing ":" and rules (`Rules`): what a Post past the memory limits checks the room against. A
# button without them (made before they were) posts only while its set is still kept.
POST_ID = r"mmpp:post:(?P<owner>\d+):(?P<style>[a-z0-9-]+):(?P<kept>[\w-]+):(?P<index>\d)(?::(?P<rules>[a-z]+))?"
# A trailing ":l": the member turned the unlinkable guard off for this portrait, and a reroll keeps that.
REROLL_ID = r"mmpp:reroll:(?P<owner>\d+):(?P<style>[a-z0-9-]+):(?P<token>[\w-]+)(?P<likeness>:l)?"
DELETE_ID = r"mmpp:delete:(?P<owner>\d+):(?P<token>[\w-]+)(?::(?P<kept>[\w-]+))?"


class NotYours(UserFacingError):
    code = "not_yours"


class PortraitGone(UserFacingError):
    code = "portrait_gone"


class OwnedButton:
    """A portrait's button that only its owner may press. Buttons bypass the command tree's error
    handler, so they answer their own errors."""

    owner_id: int
    # Told to anyone else who presses it.
    not_yours: ClassVar[str]

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            if interaction.user.id != self.owner_id:
                raise NotYours(self.not_yours)
            await self.press(interaction, services_of(interaction))
        except Exception as exc:
            await answer_error(interaction, exc)

    async def press(self, interaction: discord.Interaction, services: Services) -> None:
        raise NotImplementedError


class Rules:
    """The rules a set was drawn under, as a Post button's custom id spells them: `s` or `r` (the strict
    or the relaxed safety check), `u` (the unlinkable guard did not run), `k` (a `/last` copy: its picture
    is never read back from the message, which may be in another room than the one it was drawn in)."""

    @staticmethod
    def spell(keep: Keep) -> str:
        drawn = keep.drawn
        return ("r" if drawn.safety == "relaxed" else "s") + ("" if drawn.guarded else "u") + (
            "" if keep.read_back else "k"
        )

    @staticmethod
    def read(rules: str | None, interaction: discord.Interaction) -> DrawnUnder | None:
        """What a Post whose set is gone knows: the rules on its button, in the channel its reply was made
        in (where it is pressed); None where its button says nothing or comes from `/last`."""
        if rules is None or "k" in rules or ("s" in rules) == ("r" in rules):
            return None
        safety: SafetyLevel = "relaxed" if "r" in rules else "strict"
        return DrawnUnder(interaction.guild_id, interaction.channel_id, safety, guarded="u" not in rules)


class PostButton(OwnedButton, discord.ui.DynamicItem[discord.ui.Button], template=POST_ID):
    """Publishes one picture in the channel, with a short public line: the member's own choice, where
    the rules it was drawn under hold now (`check_room`)."""

    not_yours = N_("Only the member who made this portrait can post it.")

    def __init__(
        self, owner_id: int, style: str, kept: str, index: int, rules: str | None = None, *, label: str = "Post"
    ) -> None:
        suffix = f":{rules}" if rules else ""
        super().__init__(
            discord.ui.Button(
                label=label, emoji="📣", style=discord.ButtonStyle.primary,
                custom_id=f"mmpp:post:{owner_id}:{style}:{kept}:{index}{suffix}",
            )
        )
        self.owner_id, self.style, self.kept, self.index, self.rules = owner_id, style, kept, index, rules

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> PostButton:
        groups = match.groupdict()
        return cls(int(groups["owner"]), groups["style"], groups["kept"], int(groups["index"]), groups["rules"])

    async def press(self, interaction: discord.Interaction, services: Services) -> None:
        entry = services.results.get(self.kept, self.owner_id)
        if entry is not None and self.index in entry.posted:
            raise NotYours(N_("You've already posted this one."))
        drawn = entry.drawn if entry is not None else Rules.read(self.rules, interaction)
        if drawn is None:
            raise PortraitGone(GONE)
        # The room as it is now: an admin may have changed it since, or this is another room (`/last`).
        await check_room(services, interaction, self.style, drawn)
        if entry is not None and self.index < len(entry.pngs):
            png = entry.pngs[self.index]
        else:
            # Past the memory limits: the picture is still on the reply the button belongs to.
            png = await png_from_message(services, interaction, portrait_filename(self.style, self.index))
        # A new public message in the channel, answering the click: the room sees it from here on.
        await interaction.response.send_message(
            public_line(interaction, services, self.style),
            file=discord.File(io.BytesIO(png), portrait_filename(self.style)),
            allowed_mentions=discord.AllowedMentions.none(), ephemeral=False,
        )
        if entry is not None:
            entry.posted.add(self.index)


GONE = N_("I no longer have that portrait. Run {profile_command} again.")


async def png_from_message(services: Services, interaction: discord.Interaction, filename: str) -> bytes:
    """The picture from the message's own attachment (Discord's CDN only, size-capped)."""
    for attachment in interaction.message.attachments if interaction.message else []:
        if attachment.filename == filename:
            async with services.downloader.slots:
                return await services.downloader.fetch(attachment.url)
    raise PortraitGone(GONE)


class RerollButton(OwnedButton, discord.ui.DynamicItem[discord.ui.Button], template=REROLL_ID):
    """A new set from the same face in the same style, where the room's rules still allow it."""

    not_yours = N_("Only the member who made this portrait can reroll it.")

    def __init__(self, owner_id: int, style: str, token: str, *, label: str = "Reroll", likeness: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label=label, emoji="🎲", style=discord.ButtonStyle.secondary,
                custom_id=f"mmpp:reroll:{owner_id}:{style}:{token}" + (":l" if likeness else ""),
            )
        )
        self.owner_id, self.style, self.token, self.likeness = owner_id, style, token, likeness

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> RerollButton:
        groups = match.groupdict()
        return cls(int(groups["owner"]), groups["style"], groups["token"], likeness=groups["likeness"] is not None)

    async def press(self, interaction: discord.Interaction, services: Services) -> None:
        face = services.faces.get(self.token, self.owner_id)
        if face is None:
            raise NotYours(
                N_("I no longer have that selfie (I keep it only briefly, in memory). Run {profile_command} again.")
            )
        with services.admissions.admit(interaction.user.id):
            await defer(interaction)
            preset = await room_preset(services, interaction)
            # A button posted before a built-in was renamed carries its old name.
            style = services.queue.catalog.canonical(self.style)
            await check_style_allowed(services, interaction.guild_id, preset, style, reroll=True, where=interaction)
            # A new seed even where the room fixes seeds: a reroll that drew the same picture would be no reroll.
            # The member's "unlinkable off" holds only while the room still lets members choose.
            keep_off = self.likeness and (preset.allow_member_choice or not preset.unlinkable)
            order = PortraitOrder(
                face=face_in_hand(face), style=style, preset=preset, seed=new_seed(), face_token=self.token,
                unlinkable=False if keep_off else None, offer=PortraitView,
            )
            await make_portrait(interaction, services, order)


class DeleteButton(OwnedButton, discord.ui.DynamicItem[discord.ui.Button], template=DELETE_ID):
    """Takes the private reply away and forgets its face and pictures."""

    not_yours = N_("Only the member who made this portrait can delete it.")

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
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> DeleteButton:
        groups = match.groupdict()
        return cls(int(groups["owner"]), groups["token"], groups.get("kept"))

    async def press(self, interaction: discord.Interaction, services: Services) -> None:
        # The stores' own owner check, as Post and Reroll make: a button whose owner part was forged
        # (another member's tokens, the presser as owner) forgets nothing of anyone else's.
        if services.faces.get(self.token, self.owner_id) is not None:
            services.faces.forget(self.token)
        if self.kept and services.results.get(self.kept, self.owner_id) is not None:
            services.results.forget(self.kept)
        await interaction.response.defer()
        await interaction.delete_original_response()


def post_label(where: discord.Interaction, index: int, count: int) -> str:
    return tr(where, "Post") if count == 1 else tr(where, "Post #{n}", n=index + 1)


class PortraitView(discord.ui.View):
    """Post (one per picture, unless posted already), then Reroll and Delete where the face is still
    kept (`keep.face_token`), for the portrait's owner. Satisfies `mmpp.bot.portrait.deliver.Offer`."""

    def __init__(
        self, where: discord.Interaction, owner_id: int, style: str, keep: Keep, count: int,
        *, post: bool = True, likeness: bool = False,
    ) -> None:
        super().__init__(timeout=None)
        if post:
            rules = Rules.spell(keep)
            for index in range(count):
                label = post_label(where, index, count)
                self.add_item(PostButton(owner_id, style, keep.result_token, index, rules, label=label))
        if keep.face_token is not None:
            self.add_item(RerollButton(owner_id, style, keep.face_token, label=tr(where, "Reroll"), likeness=likeness))
            self.add_item(DeleteButton(owner_id, keep.face_token, keep.result_token, label=tr(where, "Delete")))

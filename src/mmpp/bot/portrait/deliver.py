"""The finished set to the member: a member's portrait (shaped to wear, kept for Post and /last,
with its buttons, in the channel at once where the room chose so) or an admin's sample (shown once).
How the message reaches them whatever Discord does is `mmpp.bot.portrait.reach`."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import discord

from mmpp.bot.db.job_log import Outcome
from mmpp.bot.portrait.reach import Recipient, deliver_portrait, send_elsewhere
from mmpp.bot.portrait.rules import public_by_default, style_title
from mmpp.bot.portrait.wear import PREVIEW_FILENAME, avatar_png, circle_preview, guide_embed
from mmpp.bot.replies import ProgressMessage, send_error
from mmpp.bot.stores import DrawnUnder, KeptResult
from mmpp.bot.words.i18n import N_, match, tr
from mmpp.logs import log_event

if TYPE_CHECKING:
    from mmpp.bot.portrait.order import PortraitOrder, SampleOrder
    from mmpp.bot.services import Services

log = logging.getLogger(__name__)

# Told with a set one of whose takes the safety check refused (the others are shown).
HELD_BACK = N_("One or more takes didn't pass the safety check, so they aren't shown.")

# Told with a portrait the guard could not make unlinkable (see inference/queue/unlinkable.py).
STILL_LINKABLE = N_(
    "⚠️ This portrait still looks enough like your photo that face matching could link the two: "
    "reroll, or think twice before you use it."
)

# Told with a portrait the guard could not measure (no face it could describe in the selfie, an error):
# it fails closed, so the portrait may be linkable and is never posted for the member.
UNMEASURED = N_("⚠️ I couldn't check whether face matching could link this portrait to your photo, so treat it "
                "as if it could.")


@dataclass(frozen=True)
class Keep:
    """What the bot keeps of a delivered set, by token: the finished pictures (`services.results`, for
    Post and /last) and the face they were drawn from (`services.faces`, for Reroll; None where the
    buttons offer no reroll); the rules they were drawn under, which Post buttons carry too, so a Post
    past the memory limits can still check the room; and whether Post may read the picture back from its
    own message once the kept set is gone: only on the reply made where the set was drawn (not `/last`'s)."""

    result_token: str
    drawn: DrawnUnder
    face_token: str | None = None
    read_back: bool = True


class Offer(Protocol):
    """Builds the buttons a delivered set comes with (`mmpp.bot.portrait.buttons.PortraitView`)."""

    def __call__(
        self, where: discord.Interaction, owner_id: int, style: str, keep: Keep, count: int,
        *, post: bool = True, likeness: bool = False,
    ) -> discord.ui.View: ...


@dataclass(frozen=True)
class Finished:
    """A finished set as the member may see it (takes the safety check refused left out)."""

    title: str
    pngs: list[bytes]
    seeds: list[int]
    linkable: bool = False
    held_back: int = 0
    # The guard could not measure a take: may be linkable, and the member is told.
    unmeasured: bool = False
    # Face matching may tie a take to the selfie (measured so, with the guard on or off, or not
    # measurable): never posted for the member, even where the room posts by default.
    may_link: bool = False


def portrait_filename(style: str, index: int = 0) -> str:
    return f"portrait-{style}.png" if index == 0 else f"portrait-{style}-{index + 1}.png"


def public_line(interaction: discord.Interaction, services: Services, style: str) -> str:
    """What the channel reads with a posted portrait: in the server's language, the style's title too."""
    where: str | None = None
    if interaction.guild_locale is not None:
        where = match(interaction.guild_locale)
    title = style_title(services, style, where or interaction)
    return tr(where or interaction, "{member} posted a new **{title}** profile photo.",
              member=interaction.user.mention, title=title)


def recipient(interaction: discord.Interaction) -> Recipient:
    return Recipient(interaction.user.id, interaction.guild_id, interaction.channel_id)


async def tell(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral message through the interaction; when that is gone, a DM (never the channel)."""
    if not await send_error(interaction, message):
        await send_elsewhere(interaction.client, recipient(interaction), message)


def _notes(interaction: discord.Interaction, finished: Finished) -> str:
    text = ""
    if finished.held_back:
        text += "\n" + tr(interaction, HELD_BACK)
    if finished.linkable:
        text += "\n" + tr(interaction, STILL_LINKABLE)
    elif finished.unmeasured:
        text += "\n" + tr(interaction, UNMEASURED)
    return text


def _note(interaction: discord.Interaction) -> str:
    """Said with a portrait that came another way than the reply."""
    return tr(interaction, "(I couldn't update my earlier reply, so here it is.)")


def _seeds(finished: Finished) -> str:
    return ", ".join(f"`{s}`" for s in finished.seeds)


async def deliver_sample(
    interaction: discord.Interaction, order: SampleOrder, progress: ProgressMessage, finished: Finished
) -> Outcome:
    """An admin's sample in their private reply, as drawn: no buttons, nothing kept."""
    content = tr(interaction, "Here is a **{title}** sample (seed {seeds}).", title=finished.title,
                 seeds=_seeds(finished))
    return await deliver_portrait(
        interaction, progress, recipient(interaction), content + _notes(interaction, finished), finished.pngs[0],
        portrait_filename(order.style), None, note=_note(interaction),
    )


async def deliver_set(
    interaction: discord.Interaction, services: Services, order: PortraitOrder, face_token: str,
    progress: ProgressMessage, finished: Finished, rules: DrawnUnder,
) -> Outcome:
    """The finished set in the member's private reply, each picture with its own Post button; in a
    server that chose "public by default", posted in the channel at once as if Post was pressed.
    The set stays in memory (`mmpp.bot.stores`) for Post and `/last` whichever way it reached them."""
    user, title, drawn = interaction.user, finished.title, finished.pngs
    # The size Discord takes for an avatar (the engine's own on a production model).
    pngs = await asyncio.to_thread(lambda: [avatar_png(p) for p in drawn])
    rules = dataclasses.replace(rules, linkable=finished.linkable)
    kept = services.results.put(KeptResult(order.style, pngs, finished.seeds, rules), user.id)
    keep = Keep(kept, rules, face_token)
    # A portrait face matching could tie to the selfie is never posted for the member: they decide.
    # So is a set of takes: posting them all would flood the room; the member picks one with Post #n.
    # With the guard off it was measured all the same: a room that posts by default posts only a portrait
    # shown not to match, and one the guard could not measure counts as matching (it fails closed).
    public = not finished.may_link and len(pngs) == 1 and await public_by_default(services, interaction)
    seeds = _seeds(finished)
    if len(pngs) > 1:
        content = tr(interaction, "Here are {n} takes on your **{title}** portrait (seeds {seeds}). Only you can "
                     "see them: press **Post** with the number of the one you want to show in the channel.",
                     n=len(pngs), title=title, seeds=seeds)
    elif public:
        content = tr(interaction, "Here is your **{title}** portrait (seed {seeds}); it is posted in the channel too.",
                     title=title, seeds=seeds)
    else:
        content = tr(interaction, "Here is your **{title}** portrait (seed {seeds}). Only you can see it: press "
                     "**Post** to show it in the channel.", title=title, seeds=seeds)
    likeness = order.unlinkable is False
    view = order.offer(interaction, user.id, order.style, keep, len(pngs), post=not public, likeness=likeness)
    # In a DM there is no room to post to: Reroll and Delete only.
    dm_view = order.offer(interaction, user.id, order.style, keep, 0, post=False, likeness=likeness)
    # A set's later takes ride along as further files, named so Post #n (and a reply past the memory
    # limits) finds each; then how to wear it: the circle Discord will crop it to, and where to put it.
    extras = [(png, portrait_filename(order.style, i)) for i, png in enumerate(pngs)][1:]
    extras.append((await asyncio.to_thread(circle_preview, drawn[0]), PREVIEW_FILENAME))
    outcome = await deliver_portrait(
        interaction, progress, recipient(interaction), content + _notes(interaction, finished), pngs[0],
        portrait_filename(order.style), view, note=_note(interaction),
        dm_view=dm_view, extras=extras, embed=guide_embed(interaction),
    )
    if public and outcome == "delivered":
        await post_at_once(interaction, services, keep, pngs[0], order.style)
    return outcome


async def post_at_once(
    interaction: discord.Interaction, services: Services, keep: Keep, png: bytes, style: str
) -> None:
    """The server's "public by default": the portrait in the channel, as if its member pressed Post."""
    try:
        await interaction.followup.send(
            public_line(interaction, services, style), file=discord.File(io.BytesIO(png), portrait_filename(style)),
            allowed_mentions=discord.AllowedMentions.none(), ephemeral=False,
        )
        if (entry := services.results.get(keep.result_token, interaction.user.id)) is not None:
            entry.posted.add(0)
    except discord.HTTPException as exc:
        log_event(log, logging.WARNING, "public post failed", user=interaction.user.id, status=exc.status)

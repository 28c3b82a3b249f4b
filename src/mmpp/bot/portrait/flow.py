"""One portrait from an acknowledged interaction to an answer: admission, quota, face, queue,
progress, delivery, log.

Every entry point (/profile, the avatar menu, Reroll, /style preview) acknowledges first (checks
that need only memory may answer before that), then hands a `PortraitOrder` to `make_portrait`.
From there every path ends in an answer to the member and a closed log row.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import discord

from mmpp.bot.db import ResolvedPreset
from mmpp.bot.db.repository import InteractionRef, JobKind, Outcome
from mmpp.bot.db.safety import ServerSafetyStore
from mmpp.bot.portrait.delivery import TOKEN_LIFETIME, Recipient, deliver_portrait, send_elsewhere
from mmpp.bot.portrait.posting import DeleteButton, NotYours, PostButton, portrait_filename, post_label, public_line
from mmpp.bot.portrait.safety_policy import safety_level
from mmpp.bot.portrait.style_rules import check_style_allowed, room_preset
from mmpp.bot.portrait.takes import takes_for
from mmpp.bot.portrait.wear import PREVIEW_FILENAME, avatar_png, circle_preview, guide_embed
from mmpp.bot.replies import ProgressMessage, ReplyDeleted, answer_error, defer, send_error
from mmpp.bot.services import Services, services_of
from mmpp.bot.words.i18n import N_, language_of, tr, tr_error
from mmpp.errors import UserFacingError
from mmpp.inference.generation import FILTERED_MESSAGE, random_seed
from mmpp.inference.preprocess import LocatedFace
from mmpp.inference.queue import (
    AlreadyQueued,
    Cancelled,
    Done,
    Failed,
    JobHandle,
    QueueClosed,
    Queued,
    QueueFull,
    Started,
    Step,
    discord_time,
)
from mmpp.logs import log_event

log = logging.getLogger(__name__)

# Where the face comes from: a download (after the quota is reserved), the kept crop, a sample.
FaceSource = Callable[[], Awaitable[LocatedFace]]


def kept(face: LocatedFace) -> FaceSource:
    async def source() -> LocatedFace:
        return face

    return source


@dataclass(frozen=True)
class PortraitOrder:
    face: FaceSource
    style: str
    preset: ResolvedPreset
    seed: int | None = None
    # Buttons are left off previews that are not the member's own portrait (admins' /style preview).
    buttons: bool = True
    # A reroll reuses the face its portrait already keeps; a new upload gets a new token.
    token: str | None = None
    kind: JobKind = "portrait"
    # The member's own choice about the unlinkable guard where the room allows one; None: the room's.
    unlinkable: bool | None = None


# Told with a set one of whose takes the safety check refused (the others are shown).
HELD_BACK = N_("One or more takes didn't pass the safety check, so they aren't shown.")

# Told with a portrait the guard could not make unlinkable (see inference/queue/unlinkable.py).
STILL_LINKABLE = N_(
    "⚠️ This portrait still looks enough like your photo that face matching could link the two: "
    "reroll, or think twice before you use it."
)


class CancelledWhilePreparing(UserFacingError):
    code = "cancelled"

    def __init__(self) -> None:
        super().__init__(N_("Cancelled. Run /profile again whenever you like."))


class StillPreparing(UserFacingError):
    code = "still_preparing"

    def __init__(self) -> None:
        super().__init__(
            N_("I'm still reading the picture you sent a moment ago. Wait for that portrait before asking for another.")
        )


@contextmanager
def admission(services: Services, user_id: int) -> Iterator[None]:
    """Admit a member's request, or refuse it from memory alone, so the answer is instant and
    comes before any download: a closing queue, one request per member (being prepared, waiting or
    running), and a full line, counting requests still being prepared as places taken.

    Used around the whole request (`with admission(...)`); the place it holds is given back when
    the job is queued (`make_portrait` does that) or when the request ends. Nothing awaits between
    the check and taking the place, so a burst cannot pass it together."""
    queue = services.queue
    if not queue.accepting:
        raise QueueClosed()
    if user_id in services.preparing:
        raise StillPreparing()
    if (waiting := queue.job_for(user_id)) is not None:
        position = queue.position(user_id)
        raise AlreadyQueued(waiting.id, position or None, queue.estimated_wait(position or 0))
    taken = queue.depth + len(services.preparing)
    if taken >= queue.capacity:
        raise QueueFull(taken, queue.estimated_wait(taken + 1))
    services.preparing.add(user_id)
    try:
        yield
    finally:
        services.preparing.discard(user_id)
        services.cancel_requests.discard(user_id)


def interaction_ref(interaction: discord.Interaction) -> InteractionRef:
    return InteractionRef(
        interaction.id, interaction.application_id, interaction.token, interaction.created_at + TOKEN_LIFETIME
    )


def recipient(interaction: discord.Interaction) -> Recipient:
    return Recipient(interaction.user.id, interaction.guild_id, interaction.channel_id)


async def tell(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral message through the interaction; when that is gone, a DM (never the channel)."""
    if not await send_error(interaction, message):
        await send_elsewhere(interaction.client, recipient(interaction), message)


async def public_by_default(services: Services, interaction: discord.Interaction) -> bool:
    """Whether this server chose that portraits go to the channel at once (`/style set public:`)."""
    if interaction.guild_id is None:
        return False
    return await ServerSafetyStore(services.database.sessions).public_by_default(interaction.guild_id)


async def make_portrait(interaction: discord.Interaction, services: Services, order: PortraitOrder) -> None:
    """Runs one admitted job (see `admission`) to its end on an acknowledged interaction; never
    raises to the caller for things a member caused, so a command handler can simply await it."""
    user = interaction.user
    seed = order.seed if order.seed is not None else order.preset.seed_for(user.id)
    if seed is None:
        seed = random_seed()
    log_id: int | None = None
    try:
        # A set of takes is one request whose cost is its pictures (fewer where the quota has fewer left).
        wanted = await takes_for(services, interaction.guild_id) if order.buttons else 1
        log_id, takes = await services.repo.reserve_set(
            user.id, interaction.guild_id, interaction.channel_id, order.style, pictures=wanted,
            kind=order.kind, seed=seed, interaction=interaction_ref(interaction),
            language=language_of(interaction),
        )
        located = await order.face()
        face = await asyncio.to_thread(services.engine.prepare, located)
        if user.id in services.cancel_requests:
            raise CancelledWhilePreparing()
        handle = services.queue.submit(
            face, order.style, user_id=user.id, guild_id=interaction.guild_id, seed=seed,
            background=order.preset.background, framing=order.preset.framing,
            safety=await safety_level(services, interaction),
            unlinkable=order.preset.unlinkable if order.unlinkable is None else order.unlinkable, count=takes,
        )
    except UserFacingError as exc:
        if log_id is not None:
            await services.repo.release(log_id, exc.code)
        await tell(interaction, tr_error(interaction, exc))
        return
    except BaseException:
        if log_id is not None:
            await services.repo.release(log_id, "error before the queue")
        raise
    finally:
        # Queued (its place now counts in the queue) or over.
        services.preparing.discard(user.id)
        services.cancel_requests.discard(user.id)
    await follow(interaction, services, order, handle, log_id, located)


async def follow(
    interaction: discord.Interaction,
    services: Services,
    order: PortraitOrder,
    handle: JobHandle,
    log_id: int,
    located: LocatedFace,
) -> None:
    """The job's events to the member's private reply, then the result to the member, then the log."""
    user = interaction.user
    token = order.token
    if token is None and order.buttons:
        token = services.faces.put(located, user.id)
    new_token = token is not None and token != order.token
    title = services.engine.catalog.get(order.style).definition.title
    progress = ProgressMessage(interaction, services.settings.progress_edit_interval_s)
    outcome: Outcome = "failed"
    reason: str | None = "ended without a result"
    recorded = False

    def forget_face() -> None:
        # No portrait, no Reroll button: a face kept for this job alone goes now.
        if new_token and token is not None:
            services.faces.forget(token)

    services.inflight.add(log_id)
    try:
        async for event in handle.events():
            match event:
                case Queued(position=position, estimated_wait_s=wait):
                    if position <= 1:
                        text = tr(interaction, "⏳ You're next for a **{title}** portrait (ready {when}).",
                                  title=title, when=discord_time(wait))
                    else:
                        text = tr(interaction, "⏳ You're number {position} in line for a **{title}** portrait "
                                  "(ready {when}).", position=position, title=title, when=discord_time(wait))
                    await progress.show(text)
                case Started():
                    await services.writes.started(log_id)
                    await progress.show(tr(interaction, "🎨 Drawing your **{title}** portrait…", title=title),
                                        force=True)
                case Step(i=i, n=n, preview=preview):
                    await progress.show(
                        tr(interaction, "🎨 Drawing your **{title}** portrait… step {i}/{n}", title=title, i=i, n=n),
                        preview=preview,
                    )
                case Done() if all(result.flagged for result in event.results):
                    # Never posted: the member hears why, the log says so, the quota counts it.
                    outcome, reason = "filtered", None
                    forget_face()
                    await tell(interaction, tr(interaction, FILTERED_MESSAGE))
                case Done():
                    # A take the safety check refused is left out of the set; the member is told.
                    shown = [result for result in event.results if not result.flagged]
                    outcome = await deliver(interaction, services, order, progress, token, title,
                                            [result.png() for result in shown], [result.seed for result in shown],
                                            linkable=any(result.linkable for result in shown),
                                            held_back=len(event.results) - len(shown))
                    reason = None
                    # The delivery is written before anything else can fail.
                    await services.writes.finished(log_id, outcome)
                    recorded = True
                    # A portrait made: the pictures that did not work before no longer count.
                    services.refused_uploads.forget(user.id)
                    if outcome == "undelivered":
                        log_event(log, logging.INFO, "kept for /last", user=user.id)
                case Failed(reason=message, code=code):
                    outcome = "interrupted" if code == "shutdown" else "timeout" if code == "timeout" else "failed"
                    reason = code
                    forget_face()
                    await tell(interaction, tr(interaction, message))
                case Cancelled(reason=message):
                    outcome, reason = "cancelled", None
                    forget_face()
                    await progress.show(f"✖️ {tr(interaction, message)}", force=True, clear_preview=True)
    except ReplyDeleted:
        # Someone deleted the reply: nobody is waiting for this portrait any more.
        handle.cancel()
        forget_face()
        outcome, reason = "cancelled", "reply deleted"
        log_event(log, logging.INFO, "reply deleted, job cancelled", job=handle.id, user=user.id)
    finally:
        if not handle.done:
            handle.cancel()
        if not recorded:
            await services.writes.finished(log_id, outcome, reason)
        services.inflight.discard(log_id)


async def deliver(
    interaction: discord.Interaction,
    services: Services,
    order: PortraitOrder,
    progress: ProgressMessage,
    token: str | None,
    title: str,
    pngs: list[bytes],
    seeds: list[int],
    *,
    linkable: bool = False,
    held_back: int = 0,
) -> Outcome:
    """The finished set in the member's private reply, each picture with its own Post button; in a
    server that chose "public by default", posted in the channel at once as if Post was pressed.
    The set stays in memory (`mmpp.bot.results`) for Post and `/last` whichever way it reached them."""
    user = interaction.user
    drawn = pngs
    if order.buttons:
        # The size Discord takes for an avatar (the engine's own on a production model).
        pngs = await asyncio.to_thread(lambda: [avatar_png(p) for p in drawn])
    kept = services.results.put(user.id, order.style, pngs, seeds) if order.buttons else None
    # A portrait face matching could tie to the selfie is never posted for the member: they decide.
    # So is a set of takes: posting them all would flood the room; the member picks one with Post #n.
    public = order.buttons and not linkable and len(pngs) == 1 and await public_by_default(services, interaction)
    seed_text = ", ".join(f"`{s}`" for s in seeds)
    if len(pngs) > 1:
        content = tr(interaction, "Here are {n} takes on your **{title}** portrait (seeds {seeds}). Only you can "
                     "see them: press **Post** with the number of the one you want to show in the channel.",
                     n=len(pngs), title=title, seeds=seed_text)
    elif not order.buttons:
        content = tr(interaction, "Here is a **{title}** sample (seed {seeds}).", title=title, seeds=seed_text)
    elif public:
        content = tr(interaction, "Here is your **{title}** portrait (seed {seeds}); it is posted in the channel too.",
                     title=title, seeds=seed_text)
    else:
        content = tr(interaction, "Here is your **{title}** portrait (seed {seeds}). Only you can see it: press "
                     "**Post** to show it in the channel.", title=title, seeds=seed_text)
    if held_back:
        content += "\n" + tr(interaction, HELD_BACK)
    if linkable:
        content += "\n" + tr(interaction, STILL_LINKABLE)
    likeness = order.unlinkable is False
    view = None
    if token is not None and kept is not None:
        view = PortraitView(
            interaction, user.id, order.style, token, kept, len(pngs), post=not public, likeness=likeness
        )
    # In a DM there is no room to post to: Reroll and Delete only.
    dm_view = (
        PortraitView(interaction, user.id, order.style, token, kept, 0, post=False, likeness=likeness)
        if token and kept else None
    )
    note = tr(interaction, "(I couldn't update my earlier reply, so here it is.)")
    # A set's later takes ride along as further files, named so Post #n (and a reply past the memory
    # limits) finds each.
    extras: list[tuple[bytes, str]] = [(png, portrait_filename(order.style, i)) for i, png in enumerate(pngs)][1:]
    embed = None
    if order.buttons:
        # How to wear it: the circle Discord will crop it to, and where to put it.
        extras.append((await asyncio.to_thread(circle_preview, drawn[0]), PREVIEW_FILENAME))
        embed = guide_embed(interaction)
    outcome = await deliver_portrait(
        interaction, progress, recipient(interaction), content, pngs[0], portrait_filename(order.style), view,
        note=note, dm_view=dm_view, extras=extras, embed=embed,
    )
    if public and outcome == "delivered":
        try:
            await interaction.followup.send(
                public_line(interaction, title), file=discord.File(io.BytesIO(pngs[0]), portrait_filename(order.style)),
                allowed_mentions=discord.AllowedMentions.none(), ephemeral=False,
            )
            if kept and (entry := services.results.get(kept, user.id)) is not None:
                entry.posted.add(0)
        except discord.HTTPException as exc:
            log_event(log, logging.WARNING, "public post failed", user=user.id, status=exc.status)
    return outcome


class PortraitView(discord.ui.View):
    """Post (one per picture, unless posted already), Reroll (same face and style, a new set) and
    Delete, for the portrait's owner."""

    def __init__(
        self, where: discord.Interaction, owner_id: int, style: str, token: str | None, kept: str, count: int,
        *, post: bool = True, reroll: bool = True, likeness: bool = False,
    ) -> None:
        super().__init__(timeout=None)
        if post:
            for index in range(count):
                self.add_item(PostButton(owner_id, style, kept, index, label=post_label(where, index, count)))
        if reroll and token is not None:
            self.add_item(RerollButton(owner_id, style, token, label=tr(where, "Reroll"), likeness=likeness))
            self.add_item(DeleteButton(owner_id, token, kept, label=tr(where, "Delete")))


# A trailing ":l": the member turned the unlinkable guard off for this portrait, and a reroll keeps that.
REROLL_ID = r"mmpp:reroll:(?P<owner>\d+):(?P<style>[a-z0-9-]+):(?P<token>[\w-]+)(?P<likeness>:l)?"


class RerollButton(discord.ui.DynamicItem[discord.ui.Button], template=REROLL_ID):
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
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: object
    ) -> RerollButton:
        groups = match.groupdict()  # type: ignore[attr-defined]
        return cls(int(groups["owner"]), groups["style"], groups["token"], likeness=groups["likeness"] is not None)

    async def callback(self, interaction: discord.Interaction) -> None:
        # Buttons bypass the command tree's error handler, so they answer their own errors.
        try:
            await self.reroll(interaction)
        except Exception as exc:
            await answer_error(interaction, exc)

    async def reroll(self, interaction: discord.Interaction) -> None:
        services = services_of(interaction)
        if interaction.user.id != self.owner_id:
            raise NotYours(N_("Only the member who made this portrait can reroll it."))
        face = services.faces.get(self.token, self.owner_id)
        if face is None:
            raise NotYours(N_("I no longer have that selfie (I keep it only briefly, in memory). Run /profile again."))
        with admission(services, interaction.user.id):
            await defer(interaction)
            preset = await room_preset(services, interaction)
            # A button posted before a built-in was renamed carries its old name.
            style = services.engine.catalog.canonical(self.style)
            await check_style_allowed(services, interaction.guild_id, preset, style, reroll=True)
            # A new seed even where the room fixes seeds: a reroll that drew the same picture would be no reroll.
            # The member's "unlinkable off" holds only while the room still lets members choose.
            keep_off = self.likeness and (preset.allow_member_choice or not preset.unlinkable)
            order = PortraitOrder(
                face=kept(face), style=style, preset=preset, seed=random_seed(), token=self.token,
                unlinkable=False if keep_off else None,
            )
            await make_portrait(interaction, services, order)

"""One portrait from an acknowledged interaction to an answer: admission, quota, face, queue,
progress, delivery, log.

Every entry point (/profile, the avatar menu, Reroll, /style preview) acknowledges first (checks
that need only memory may answer before that), then hands a `PortraitOrder` to `make_portrait`.
From there every path ends in an answer to the member and a closed log row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import discord

from bot.db import ResolvedPreset
from bot.db.repository import InteractionRef, JobKind, Outcome
from bot.delivery import TOKEN_LIFETIME, Recipient, deliver_portrait, send_elsewhere
from bot.replies import ProgressMessage, ReplyDeleted, answer_error, defer, send_error
from bot.safety_policy import safety_level
from bot.services import Services, services_of
from bot.style_rules import check_style_allowed
from inference.engine import random_seed
from inference.preprocess import LocatedFace
from inference.queue import (
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
    describe_wait,
)
from inference.safety import FILTERED_MESSAGE
from mmpp.errors import UserFacingError
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


class CancelledWhilePreparing(UserFacingError):
    code = "cancelled"

    def __init__(self) -> None:
        super().__init__("Cancelled. Run /profile again whenever you like.")


class StillPreparing(UserFacingError):
    code = "still_preparing"

    def __init__(self) -> None:
        super().__init__(
            "I'm still reading the picture you sent a moment ago. Wait for that portrait before asking for another."
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
    return Recipient(
        interaction.user.id, interaction.guild_id, interaction.channel_id,
        private=bool(interaction.extras.get("ephemeral", False)),
    )


async def tell(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral error through the interaction; when that is gone, the channel or a DM."""
    if not await send_error(interaction, message):
        await send_elsewhere(interaction.client, recipient(interaction), f"{interaction.user.mention} {message}")


async def make_portrait(interaction: discord.Interaction, services: Services, order: PortraitOrder) -> None:
    """Runs one admitted job (see `admission`) to its end on an acknowledged interaction; never
    raises to the caller for things a member caused, so a command handler can simply await it."""
    user = interaction.user
    seed = order.seed if order.seed is not None else order.preset.seed_for(user.id)
    if seed is None:
        seed = random_seed()
    log_id: int | None = None
    try:
        log_id = await services.repo.reserve(
            user.id, interaction.guild_id, interaction.channel_id, order.style,
            kind=order.kind, seed=seed, interaction=interaction_ref(interaction),
        )
        located = await order.face()
        face = await asyncio.to_thread(services.engine.prepare, located)
        if user.id in services.cancel_requests:
            raise CancelledWhilePreparing()
        handle = services.queue.submit(
            face, order.style, user_id=user.id, guild_id=interaction.guild_id, seed=seed,
            background=order.preset.background, framing=order.preset.framing,
            safety=await safety_level(services, interaction),
        )
    except UserFacingError as exc:
        if log_id is not None:
            await services.repo.release(log_id, exc.code)
        await tell(interaction, exc.message)
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
    """The job's events to the member's reply, then the result to the member, then the log."""
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
                    ahead = "You're next" if position <= 1 else f"You're number {position} in line"
                    await progress.show(f"⏳ {ahead} for a **{title}** portrait ({describe_wait(wait)}).")
                case Started():
                    await services.writes.started(log_id)
                    await progress.show(f"🎨 Drawing your **{title}** portrait…", force=True)
                case Step(i=i, n=n, preview=preview):
                    await progress.show(f"🎨 Drawing your **{title}** portrait… step {i}/{n}", preview=preview)
                case Done(result=result) if result.flagged:
                    # Never posted: the member hears why, the log says so, the quota counts it.
                    outcome, reason = "filtered", None
                    forget_face()
                    await tell(interaction, FILTERED_MESSAGE)
                case Done(result=result):
                    view = PortraitView(user.id, order.style, token) if token else None
                    content = f"{user.mention}, here is your **{title}** portrait (seed `{result.seed}`)."
                    outcome = await deliver_portrait(
                        interaction, progress, recipient(interaction),
                        content, result.png(), f"portrait-{order.style}.png", view,
                    )
                    reason = None
                    # The delivery is written before anything else can fail.
                    await services.writes.finished(log_id, outcome)
                    recorded = True
                    if outcome == "undelivered":
                        forget_face()
                case Failed(reason=message, code=code):
                    outcome = "interrupted" if code == "shutdown" else "timeout" if code == "timeout" else "failed"
                    reason = code
                    forget_face()
                    await tell(interaction, message)
                case Cancelled(reason=message):
                    outcome, reason = "cancelled", None
                    forget_face()
                    await progress.show(f"✖️ {message}", force=True, clear_preview=True)
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


class PortraitView(discord.ui.View):
    """Reroll (same face, same style, new seed) and Delete, for the portrait's owner."""

    def __init__(self, owner_id: int, style: str, token: str) -> None:
        super().__init__(timeout=None)
        self.add_item(RerollButton(owner_id, style, token))
        self.add_item(DeleteButton(owner_id, token))


class NotYours(UserFacingError):
    code = "not_yours"


REROLL_ID = r"mmpp:reroll:(?P<owner>\d+):(?P<style>[a-z0-9-]+):(?P<token>[\w-]+)"
DELETE_ID = r"mmpp:delete:(?P<owner>\d+):(?P<token>[\w-]+)"


class RerollButton(discord.ui.DynamicItem[discord.ui.Button], template=REROLL_ID):
    def __init__(self, owner_id: int, style: str, token: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Reroll", emoji="🎲", style=discord.ButtonStyle.primary,
                custom_id=f"mmpp:reroll:{owner_id}:{style}:{token}",
            )
        )
        self.owner_id, self.style, self.token = owner_id, style, token

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: object
    ) -> RerollButton:
        groups = match.groupdict()  # type: ignore[attr-defined]
        return cls(int(groups["owner"]), groups["style"], groups["token"])

    async def callback(self, interaction: discord.Interaction) -> None:
        # Buttons bypass the command tree's error handler, so they answer their own errors.
        try:
            await self.reroll(interaction)
        except Exception as exc:
            await answer_error(interaction, exc)

    async def reroll(self, interaction: discord.Interaction) -> None:
        services = services_of(interaction)
        if interaction.user.id != self.owner_id:
            raise NotYours("Only the member who made this portrait can reroll it.")
        face = services.faces.get(self.token, self.owner_id)
        if face is None:
            raise NotYours("I no longer have that selfie (I keep it only briefly, in memory). Run /profile again.")
        with admission(services, interaction.user.id):
            await defer(interaction)
            preset = await services.repo.resolve(interaction.guild_id, interaction.channel_id)
            await check_style_allowed(services, interaction.guild_id, preset, self.style, reroll=True)
            # A new seed even where the room fixes seeds: a reroll that drew the same picture would be no reroll.
            order = PortraitOrder(
                face=kept(face), style=self.style, preset=preset, seed=random_seed(), token=self.token
            )
            await make_portrait(interaction, services, order)


class DeleteButton(discord.ui.DynamicItem[discord.ui.Button], template=DELETE_ID):
    def __init__(self, owner_id: int, token: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Delete", emoji="🗑️", style=discord.ButtonStyle.secondary,
                custom_id=f"mmpp:delete:{owner_id}:{token}",
            )
        )
        self.owner_id, self.token = owner_id, token

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: object
    ) -> DeleteButton:
        groups = match.groupdict()  # type: ignore[attr-defined]
        return cls(int(groups["owner"]), groups["token"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            if interaction.user.id != self.owner_id:
                raise NotYours("Only the member who made this portrait can delete it.")
            services_of(interaction).faces.forget(self.token)
            await interaction.response.defer()
            await interaction.delete_original_response()
        except Exception as exc:
            await answer_error(interaction, exc)

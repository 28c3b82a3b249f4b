"""An admitted order through the queue to the member's answer: quota, face, submit (`make_portrait`),
then the queue's events as the member's private reply (`follow`). Wording, the log row and the
face kept for Reroll are each their own small function below; the finished set goes to
`mmpp.bot.portrait.deliver`. From `make_portrait` on, every path ends in an answer to the member
and a closed log row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

from mmpp.bot.db.job_log import InteractionRef, Outcome
from mmpp.bot.portrait.deliver import Finished, deliver_sample, deliver_set, tell
from mmpp.bot.portrait.order import CancelledWhilePreparing, Order, PortraitOrder, new_seed
from mmpp.bot.portrait.reach import TOKEN_LIFETIME
from mmpp.bot.portrait.rules import safety_level, style_title, takes_for
from mmpp.bot.replies import ProgressMessage, ReplyDeleted
from mmpp.bot.stores import DrawnUnder, TimedStore
from mmpp.bot.words.errors import FILTERED
from mmpp.bot.words.i18n import language_of, tr, tr_error
from mmpp.bot.words.markup import discord_time
from mmpp.errors import UserFacingError
from mmpp.inference.queue import Cancelled, Done, Failed, JobHandle, Queued, Started, Step, TerminalEvent
from mmpp.logs import log_event

if TYPE_CHECKING:
    from mmpp.bot.services import Services
    from mmpp.inference.preprocess import LocatedFace

log = logging.getLogger(__name__)


def interaction_ref(interaction: discord.Interaction) -> InteractionRef:
    return InteractionRef(
        interaction.id, interaction.application_id, interaction.token, interaction.created_at + TOKEN_LIFETIME
    )


async def make_portrait(interaction: discord.Interaction, services: Services, order: Order) -> None:
    """Runs one admitted order (see `Admissions.admit`) to its end on an acknowledged interaction;
    never raises to the caller for things a member caused, so a command handler can simply await it."""
    user = interaction.user
    seed = order.seed if order.seed is not None else order.preset.seed_for(user.id)
    if seed is None:
        seed = new_seed()
    log_id: int | None = None
    try:
        # A set of takes is one request whose cost is its pictures (fewer where the quota has fewer left).
        wanted = await takes_for(services, interaction.guild_id) if isinstance(order, PortraitOrder) else 1
        log_id, takes = await services.repo.reserve_set(
            user.id, interaction.guild_id, interaction.channel_id, order.style, pictures=wanted,
            kind=order.job_kind, seed=seed, interaction=interaction_ref(interaction),
            language=language_of(interaction),
        )
        located = await order.face()
        face = await services.queue.prepare(located)
        if services.admissions.cancelled(user.id):
            raise CancelledWhilePreparing()
        # The rules the set is drawn under travel with it, so Post can tell where they still hold.
        drawn = DrawnUnder(
            interaction.guild_id, interaction.channel_id, await safety_level(services, interaction),
            guarded=order.preset.unlinkable if order.unlinkable is None else order.unlinkable,
        )
        handle = services.queue.submit(
            face, order.style, user_id=user.id, guild_id=interaction.guild_id, seed=seed,
            background=order.preset.background, framing=order.preset.framing,
            safety=drawn.safety, unlinkable=drawn.guarded, count=takes,
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
        services.admissions.release(user.id)
    await follow(interaction, services, order, handle, log_id, located, drawn)


@dataclass
class HeldFace:
    """The face a member's set keeps for Reroll (a face-store token; none for a sample). A face
    kept for this job alone goes when no portrait comes of it: no portrait, no Reroll button."""

    faces: TimedStore[LocatedFace]
    token: str | None
    new: bool

    @classmethod
    def hold(cls, services: Services, order: Order, located: LocatedFace, user_id: int) -> HeldFace:
        if not isinstance(order, PortraitOrder):
            return cls(services.faces, None, new=False)
        if order.face_token is not None:  # a reroll: the face its portrait already keeps
            return cls(services.faces, order.face_token, new=False)
        return cls(services.faces, services.faces.put(located, user_id), new=True)

    def forget(self) -> None:
        if self.new and self.token is not None:
            self.faces.forget(self.token)


async def show_progress(
    interaction: discord.Interaction, progress: ProgressMessage, event: Queued | Started | Step, title: str
) -> None:
    """A place in line, the start, a step (with its preview) as the member's reply words them."""
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
            await progress.show(tr(interaction, "🎨 Drawing your **{title}** portrait…", title=title), force=True)
        case Step(i=i, n=n, preview=preview):
            await progress.show(
                tr(interaction, "🎨 Drawing your **{title}** portrait… step {i}/{n}", title=title, i=i, n=n),
                preview=preview,
            )


async def say_not_made(interaction: discord.Interaction, progress: ProgressMessage, event: TerminalEvent) -> None:
    """Why no portrait came: every picture refused by the safety check, a failure, a cancel."""
    if isinstance(event, Done):
        await tell(interaction, tr(interaction, FILTERED))
    elif isinstance(event, Failed):
        await tell(interaction, tr_error(interaction, event))
    else:
        await progress.show(f"✖️ {tr_error(interaction, event)}", force=True, clear_preview=True)


def logged_as(event: TerminalEvent) -> tuple[Outcome, str | None]:
    """What the log row says of a job that ended without a delivery (a filtered set counts in the quota)."""
    if isinstance(event, Done):
        return "filtered", None
    if isinstance(event, Cancelled):
        return "cancelled", None
    outcome: Outcome = "interrupted" if event.code == "shutdown" else "timeout" if event.code == "timeout" else "failed"
    return outcome, event.code


def finished_set(event: Done, title: str) -> Finished | None:
    """The takes the member may see (a take the safety check refused is left out; they are told), or
    None when the check refused them all."""
    shown = [result for result in event.results if not result.flagged]
    if not shown:
        return None
    return Finished(title, [result.png() for result in shown], [result.seed for result in shown],
                    linkable=any(result.linkable for result in shown), held_back=len(event.results) - len(shown),
                    unmeasured=any(result.guard == "unmeasured" for result in shown),
                    may_link=any(result.may_link or result.linkable for result in shown))


async def follow(
    interaction: discord.Interaction,
    services: Services,
    order: Order,
    handle: JobHandle,
    log_id: int,
    located: LocatedFace,
    drawn: DrawnUnder,
) -> None:
    """The job's events to the member's private reply, then the result to the member, then the log."""
    user = interaction.user
    face = HeldFace.hold(services, order, located, user.id)
    title = style_title(services, order.style, interaction)
    progress = ProgressMessage(interaction, services.settings.progress_edit_interval_s)
    outcome: Outcome = "failed"
    reason: str | None = "ended without a result"
    recorded = False
    with services.writes.replying(log_id):
        try:
            async for event in handle.events():
                if isinstance(event, Queued | Started | Step):
                    if isinstance(event, Started):
                        await services.writes.started(log_id)
                    await show_progress(interaction, progress, event, title)
                elif isinstance(event, Done) and (finished := finished_set(event, title)) is not None:
                    if isinstance(order, PortraitOrder):
                        assert face.token is not None
                        outcome = await deliver_set(
                            interaction, services, order, face.token, progress, finished, drawn
                        )
                    else:
                        outcome = await deliver_sample(interaction, order, progress, finished)
                    reason = None
                    # The delivery is written before anything else can fail.
                    await services.writes.finished(log_id, outcome)
                    recorded = True
                    # A portrait made: the pictures that did not work before no longer count.
                    services.refused_uploads.forget(user.id)
                    if outcome == "undelivered":
                        log_event(log, logging.INFO, "kept for /last", user=user.id)
                else:
                    outcome, reason = logged_as(event)
                    face.forget()
                    await say_not_made(interaction, progress, event)
        except ReplyDeleted:
            # Someone deleted the reply: nobody is waiting for this portrait any more.
            handle.cancel()
            face.forget()
            outcome, reason = "cancelled", "reply deleted"
            log_event(log, logging.INFO, "reply deleted, job cancelled", job=handle.id, user=user.id)
        finally:
            if not handle.done:
                handle.cancel()
            if not recorded:
                await services.writes.finished(log_id, outcome, reason)

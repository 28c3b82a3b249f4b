"""One portrait from a located face to the final edited reply: queue, progress, log, buttons.

Every entry point (/profile, the avatar menu, Reroll, /style preview) ends up here, after it has
answered the interaction with a deferred "thinking…" reply.
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass

import discord

from bot.db import ResolvedPreset
from bot.db.repository import Outcome
from bot.replies import ProgressMessage, answer_error, defer, send_error
from bot.safety_policy import safety_level
from bot.services import Services, services_of
from bot.style_rules import check_style_allowed
from inference.engine import random_seed
from inference.preprocess import LocatedFace
from inference.queue import AlreadyQueued, Cancelled, Done, Failed, Queued, Started, Step, describe_wait
from inference.safety import FILTERED_MESSAGE
from mmpp.errors import UserFacingError
from mmpp.logs import log_event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortraitOrder:
    face: LocatedFace
    style: str
    preset: ResolvedPreset
    seed: int | None = None
    # Buttons are left off previews that are not the member's own portrait (admins' /style preview).
    buttons: bool = True
    # A reroll reuses the face its portrait already keeps; a new upload gets a new token.
    token: str | None = None


async def ensure_can_start(services: Services, interaction: discord.Interaction) -> None:
    """What refuses a new job without looking at the picture: one job per member, daily quotas."""
    user_id = interaction.user.id
    if (waiting := services.queue.job_for(user_id)) is not None:
        position = services.queue.position(user_id)
        raise AlreadyQueued(waiting.id, position or None, services.queue.estimated_wait(position or 0))
    await services.repo.check_quota(user_id, interaction.guild_id)


async def make_portrait(interaction: discord.Interaction, services: Services, order: PortraitOrder) -> None:
    """Runs one job to its end, editing the interaction's deferred reply; never raises to the caller
    for things a member caused, so a command handler can simply await it."""
    user = interaction.user
    guild_id = interaction.guild_id
    seed = order.seed if order.seed is not None else order.preset.seed_for(user.id)
    if seed is None:
        seed = random_seed()
    try:
        face = await asyncio.to_thread(services.engine.prepare, order.face)
        handle = services.queue.submit(
            face, order.style, user_id=user.id, guild_id=guild_id, seed=seed,
            background=order.preset.background, framing=order.preset.framing,
            safety=await safety_level(services, interaction),
        )
    except UserFacingError as exc:
        await send_error(interaction, exc.message)
        return
    try:
        log_id = await services.repo.log_queued(user.id, guild_id, interaction.channel_id, order.style, seed)
    except BaseException:
        handle.cancel()  # a job nobody follows must not hold the GPU or the member's one slot
        raise
    token = order.token
    if token is None and order.buttons:
        token = services.faces.put(order.face, user.id)
    new_token = token is not None and token != order.token
    title = services.engine.catalog.get(order.style).definition.title
    progress = ProgressMessage(interaction, services.settings.progress_edit_interval_s)
    logged = False

    async def log_outcome(outcome: Outcome, reason: str | None) -> None:
        # Before the member sees the result, so the log is never behind what Discord shows.
        nonlocal logged
        logged = True
        await services.repo.log_finished(log_id, outcome, reason)

    def forget_face() -> None:
        # No portrait, no Reroll button: a face kept for this job alone goes now.
        if new_token and token is not None:
            services.faces.forget(token)

    services.inflight.add(handle.id)
    try:
        async for event in handle.events():
            match event:
                case Queued(position=position, estimated_wait_s=wait):
                    ahead = "You're next" if position <= 1 else f"You're number {position} in line"
                    await progress.show(f"⏳ {ahead} for a **{title}** portrait ({describe_wait(wait)}).")
                case Started():
                    await services.repo.log_started(log_id)
                    await progress.show(f"🎨 Drawing your **{title}** portrait…", force=True)
                case Step(i=i, n=n, preview=preview):
                    await progress.show(f"🎨 Drawing your **{title}** portrait… step {i}/{n}", preview=preview)
                case Done(result=result) if result.flagged:
                    # Never posted: the member hears why, the log says so, the quota counts it.
                    await log_outcome("filtered", None)
                    forget_face()
                    await send_error(interaction, FILTERED_MESSAGE)
                case Done(result=result):
                    await log_outcome("done", None)
                    view = PortraitView(user.id, order.style, token) if token else None
                    content = f"{user.mention}, here is your **{title}** portrait (seed `{result.seed}`)."
                    png = discord.File(io.BytesIO(result.png()), filename=f"portrait-{order.style}.png")
                    await progress.finish(content, png, view)
                case Failed(reason=message, code=code):
                    await log_outcome("timeout" if code == "timeout" else "failed", code)
                    forget_face()
                    await send_error(interaction, message)
                case Cancelled(reason=message):
                    await log_outcome("cancelled", None)
                    forget_face()
                    await progress.show(f"✖️ {message}", force=True, clear_preview=True)
    except discord.HTTPException as exc:
        # The reply is gone (deleted, or its token expired): nobody is waiting for this portrait.
        handle.cancel()
        log_event(log, logging.WARNING, "reply lost", job=handle.id, status=exc.status)
        if not logged:
            await log_outcome("cancelled", f"reply lost ({exc.status})")
    finally:
        if not handle.done:
            handle.cancel()
        if not logged:
            await log_outcome("failed", "ended without a result")
        services.inflight.discard(handle.id)


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
        await ensure_can_start(services, interaction)
        preset = await services.repo.resolve(interaction.guild_id, interaction.channel_id)
        await check_style_allowed(services, interaction.guild_id, preset, self.style, reroll=True)
        await defer(interaction)
        # A new seed even where the room fixes seeds: a reroll that drew the same picture would be no reroll.
        order = PortraitOrder(face=face, style=self.style, preset=preset, seed=random_seed(), token=self.token)
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

"""Reaching the member with a finished portrait, or a "not made" notice, whatever Discord does.

The first way is always the interaction's own (private) reply. When that fails for good (its token
expired, discord.py's retries of a 5xx ran out, a 429 that does not end), the portrait goes to the
member's DMs, never to the channel: nothing is public until its member says so. The message itself
says why it came that way. If DMs are closed too, the portrait stays in memory for a while
(`mmpp.bot.stores`) and `/last` shows it. The caller logs what really happened: `delivered`,
`delivered_fallback` or `undelivered`.

Notices for jobs a restart interrupted use the same chain, from ids alone: the interaction's
webhook while its token is valid, then a DM.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import aiohttp
import discord

from mmpp.bot.replies import PREVIEW_FILENAME, UNKNOWN_MESSAGE, ProgressMessage, ReplyDeleted
from mmpp.logs import log_event

log = logging.getLogger(__name__)

Delivery = Literal["delivered", "delivered_fallback", "undelivered"]
# A token that is about to expire is not worth a try: the edit would land after it died.
TOKEN_MARGIN = timedelta(seconds=30)
# Interaction tokens live 15 minutes (Discord's documented limit).
TOKEN_LIFETIME = timedelta(minutes=15)


@dataclass(frozen=True)
class Recipient:
    """Where a member can be reached without the live interaction."""

    user_id: int
    guild_id: int | None
    channel_id: int | None


def _mentions(user_id: int) -> discord.AllowedMentions:
    return discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(user_id)])


async def send_elsewhere(
    client: discord.Client,
    to: Recipient,
    content: str,
    *,
    png: bytes | None = None,
    filename: str = "portrait.png",
    view: discord.ui.View | None = None,
    extras: list[tuple[bytes, str]] | None = None,
    embed: discord.Embed | None = None,
) -> bool:
    """Send `content` (and the PNG) to the member's DMs; False if their DMs are closed or Discord fails.
    Never the channel: what the member has not chosen to post stays private."""

    def kwargs() -> dict[str, object]:
        # A fresh File per try: a failed upload has consumed the previous one.
        out: dict[str, object] = {"content": content, "allowed_mentions": _mentions(to.user_id)}
        if png is not None:
            files = [discord.File(io.BytesIO(png), filename=filename)]
            files += [discord.File(io.BytesIO(data), filename=name) for data, name in extras or []]
            out["files"] = files
        if embed is not None:
            out["embed"] = embed
        if view is not None:
            out["view"] = view
        return out

    try:
        dm = await client.create_dm(discord.Object(to.user_id))  # type: ignore[arg-type]
        await dm.send(**kwargs())  # type: ignore[arg-type]
        return True
    except discord.HTTPException as exc:
        log_event(log, logging.WARNING, "DM fallback failed", user=to.user_id, status=exc.status)
    return False


async def deliver_portrait(
    interaction: discord.Interaction,
    progress: ProgressMessage,
    to: Recipient,
    content: str,
    png: bytes,
    filename: str,
    view: discord.ui.View | None,
    *,
    note: str,
    dm_view: discord.ui.View | None = None,
    extras: list[tuple[bytes, str]] | None = None,
    embed: discord.Embed | None = None,
) -> Delivery:
    """The reply first; when it cannot be edited any more, a DM. A reply someone
    deleted raises `ReplyDeleted`: nobody is waiting for this portrait.

    A failed edit may have landed all the same (Discord applied it and the answer was lost: a 5xx,
    a dropped connection), so the reply is read back before the DM: a portrait the member already
    has (and may have posted) is neither sent twice nor written over by an error."""
    try:
        files = [discord.File(io.BytesIO(png), filename=filename)]
        files += [discord.File(io.BytesIO(data), filename=name) for data, name in extras or []]
        await progress.finish(content, files, view, embed)
        return "delivered"
    except discord.HTTPException as exc:
        if exc.code == UNKNOWN_MESSAGE:
            raise ReplyDeleted() from exc  # someone deleted the reply: not a failure to work around
        log_event(log, logging.WARNING, "final edit failed", user=to.user_id, status=exc.status, code=exc.code)
    except (aiohttp.ClientError, OSError) as exc:
        # No answer at all (reset, timeout): the edit may or may not have been applied.
        log_event(log, logging.WARNING, "final edit unanswered", user=to.user_id, error=type(exc).__name__)
    if await reply_shows_portrait(interaction):
        log_event(log, logging.INFO, "final edit had landed", user=to.user_id)
        return "delivered"
    if await send_elsewhere(interaction.client, to, f"{content}\n{note}", png=png, filename=filename, view=dm_view,
                             extras=extras, embed=embed):
        return "delivered_fallback"
    return "undelivered"


def shows_portrait(message: discord.Message) -> bool:
    """A reply that carries a file other than a progress preview carries the member's portrait."""
    return any(a.filename != PREVIEW_FILENAME for a in message.attachments)


async def reply_shows_portrait(interaction: discord.Interaction) -> bool:
    """Whether the interaction's reply, as Discord has it now, carries the portrait. Read afresh (not
    discord.py's cached copy); a deleted reply raises `ReplyDeleted`, and a reply that cannot be
    read counts as not showing it (the DM is then the safer side)."""
    try:
        reply = await interaction.followup.fetch_message("@original")  # type: ignore[arg-type]
    except discord.HTTPException as exc:
        if exc.code == UNKNOWN_MESSAGE:
            raise ReplyDeleted() from exc
        log_event(log, logging.INFO, "reply unreadable", status=exc.status, code=exc.code)
        return False
    except (aiohttp.ClientError, OSError) as exc:
        log_event(log, logging.INFO, "reply unreadable", error=type(exc).__name__)
        return False
    return shows_portrait(reply)


def token_usable(expires_at: datetime | None, now: datetime | None = None) -> bool:
    if expires_at is None:
        return False
    return (now or datetime.now(UTC)) + TOKEN_MARGIN < expires_at


async def notify(
    client: discord.Client,
    to: Recipient,
    content: str,
    *,
    application_id: int | None = None,
    token: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """Tell a member something about a job from ids alone; returns how ("reply", "elsewhere",
    "nobody"), or "already delivered" when the reply shows their portrait: then nothing is said
    and nothing is edited (a crash between a delivery and its log write leaves such a row open)."""
    if application_id and token and token_usable(expires_at):
        webhook = discord.Webhook.partial(application_id, token, client=client)
        try:
            # "@original" is the deferred reply; the route takes it where a message id would go.
            reply = await webhook.fetch_message("@original")  # type: ignore[arg-type]
            if shows_portrait(reply):
                return "already delivered"
            await webhook.edit_message("@original", content=content, attachments=[], view=None)  # type: ignore[arg-type]
            return "reply"
        except discord.HTTPException as exc:
            # Deleted, expired or unreadable: the notice goes elsewhere, and an unread reply is
            # never edited (the edit could take a portrait back).
            log_event(log, logging.INFO, "notice by reply failed", user=to.user_id, status=exc.status)
    if await send_elsewhere(client, to, content):
        return "elsewhere"
    return "nobody"

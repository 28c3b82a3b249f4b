"""Jobs a crash, restart or stop left open: tell each member their portrait was not made, and close
the row so it does not count against their quota.

The bot runs this at start for whatever the previous run left open (even after `kill -9`: the
rows were written when the job was reserved), and at a graceful stop for what did not end within
the grace time. Where several shard processes share the database, each answers only for its own
shards' rows (`mmpp.bot.app.sharding.own_jobs`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Literal

import discord

from mmpp.bot.db import Repository
from mmpp.bot.db.job_log import OpenJob
from mmpp.bot.portrait.bookkeeping import DATABASE_ERRORS
from mmpp.bot.portrait.reach import Recipient, notify
from mmpp.bot.words.i18n import N_, SOURCE_LANGUAGE, match, tr
from mmpp.logs import log_event

log = logging.getLogger(__name__)

# A job older than this is closed without a word: a notice days later, in a channel, about a
# portrait the member has long stopped waiting for is noise (a bot that was down for a week).
TELL_WITHIN = timedelta(days=1)


# Why a job was left open: a start found it (the bot restarted), or a stop ran out of time.
Why = Literal["restart", "stop"]
# What the log's reason says (for the operator, in English).
REASONS: dict[Why, str] = {"restart": "I restarted", "stop": "I had to stop"}
# Whole sentences per case, so each language can word each one naturally.
NOTICES: dict[tuple[Why, str], str] = {
    ("restart", "portrait"): N_(
        "I restarted before your portrait was finished, so it wasn't made. "
        "It doesn't count against your daily limit; run {profile_command} again whenever you like."
    ),
    ("restart", "preview"): N_(
        "I restarted before your style preview was finished, so it wasn't made. "
        "It doesn't count against your daily limit; ask for it again whenever you like."
    ),
    ("stop", "portrait"): N_(
        "I had to stop before your portrait was finished, so it wasn't made. "
        "It doesn't count against your daily limit; run {profile_command} again whenever you like."
    ),
    ("stop", "preview"): N_(
        "I had to stop before your style preview was finished, so it wasn't made. "
        "It doesn't count against your daily limit; ask for it again whenever you like."
    ),
}


def notice(job: OpenJob, why: Why) -> str:
    """The notice in the language the member was answered in when the job opened (the interaction
    is gone by now); a row from before languages were kept, or of a language since removed, reads English."""
    kind = "preview" if job.kind == "preview" else "portrait"
    return f"<@{job.user_id}> ⚠️ " + tr(match(job.language) or SOURCE_LANGUAGE, NOTICES[why, kind])


async def close_open_jobs(
    client: discord.Client, repo: Repository, jobs: list[OpenJob], *, why: Why, timeout_s: float | None = None
) -> int:
    """Tell and close each job; returns how many were closed. With `timeout_s`, what is not done by
    then stays open, and the next start tells those members."""
    closed = 0
    now = datetime.now(UTC)
    reason = REASONS[why]
    try:
        async with asyncio.timeout(timeout_s):
            for job in jobs:
                if job.queued_at is not None and now - _aware(job.queued_at) > TELL_WITHIN:
                    try:
                        await repo.log_finished(job.log_id, "interrupted", f"{reason}; too old to tell")
                        closed += 1
                    except DATABASE_ERRORS as exc:
                        log_event(log, logging.WARNING, "open job not closed", log_id=job.log_id,
                                  error=type(exc).__name__)
                    continue
                ref = job.interaction
                to = Recipient(job.user_id, job.guild_id, job.channel_id)
                how = await notify(
                    client, to, notice(job, why),
                    application_id=ref.application_id if ref else None,
                    token=ref.token if ref else None,
                    expires_at=ref.expires_at if ref else None,
                )
                try:
                    if how == "already delivered":
                        await repo.log_finished(job.log_id, "delivered", f"found delivered after: {reason}")
                    else:
                        await repo.log_finished(job.log_id, "interrupted", f"{reason}; told by {how}")
                except DATABASE_ERRORS as exc:
                    # Told, but not written: the next start looks again (and finds the notice, not a portrait).
                    log_event(log, logging.WARNING, "open job not closed", log_id=job.log_id, error=type(exc).__name__)
                    continue
                closed += 1
                log_event(log, logging.INFO, "interrupted job closed", log_id=job.log_id, user=job.user_id, told=how)
    except TimeoutError:
        log_event(log, logging.WARNING, "interrupted jobs left for the next start", left=len(jobs) - closed)
    return closed


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; the log stores UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

"""The discord.py client: cogs, persistent buttons, command sync, and one error handler."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands, tasks

from mmpp.bot.app.discord_endpoints import proxy_rate_limit_trace
from mmpp.bot.app.recovery import close_open_jobs
from mmpp.bot.app.sharding import own_jobs
from mmpp.bot.cogs.member_styles import MemberStylesCog
from mmpp.bot.cogs.profile import ProfileCog
from mmpp.bot.cogs.queue_cmds import QueueCog
from mmpp.bot.cogs.style_admin import StyleCog
from mmpp.bot.portrait.buttons import DeleteButton, PostButton, RerollButton
from mmpp.bot.replies import answer_error
from mmpp.bot.services import Services
from mmpp.bot.words.i18n import CommandTranslator
from mmpp.logs import log_event

log = logging.getLogger(__name__)


class MMPPBot(commands.AutoShardedBot):
    # Sharded from the start (issue 12): one shard for a small bot, Discord's recommended count (or
    # SHARD_COUNT/SHARD_IDS, see `mmpp.bot.app.sharding`) past 2,500 servers, with no code path of its own.

    def __init__(self, services: Services, **options: Any) -> None:
        # The bot never joins voice; discord.py's warnings about voice libraries would only confuse.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True  # GUILD_CREATE: channel names and permissions; no message content needed
        if services.settings.discord_api_base:
            # A REST proxy's 429 is a rate limit to wait out, not a Cloudflare ban (see the function).
            options.setdefault("http_trace", proxy_rate_limit_trace(services.settings.discord_api_base))
        # REST errors by status and acknowledgement times, for the metrics (see `mmpp.bot.metrics`).
        options["http_trace"] = services.metrics.trace(options.get("http_trace"))
        # No message cache: the bot never reads messages back (buttons carry what they need), and the
        # cache would hold up to 1,000 of its own portrait messages for nothing.
        options.setdefault("max_messages", None)
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None, **options)
        self.services = services
        self.tree.on_error = self.on_app_command_error
        self._recovery: asyncio.Task[int] | None = None

    def dispatch(self, event_name: str, /, *args: Any, **kwargs: Any) -> None:
        # Synchronous, as the gateway event is parsed: the acknowledgement clock starts at receipt,
        # before the command's own task runs.
        if event_name == "interaction":
            self.services.metrics.received(args[0].id)
        super().dispatch(event_name, *args, **kwargs)

    async def setup_hook(self) -> None:
        for cog in (ProfileCog(self), MemberStylesCog(self), StyleCog(self), QueueCog(self)):
            await self.add_cog(cog)
        # Buttons keep working after a restart: their custom ids carry all they need.
        self.add_dynamic_items(RerollButton, DeleteButton, PostButton)
        self.services.queue.start()
        self.purge_log.start()
        self.forget_old_faces.start()
        # Before the gateway connects, so every open row is a previous run's, none of this one's.
        left_open = own_jobs(self.services.settings, await self.services.repo.open_jobs())
        await self.tree.set_translator(CommandTranslator())
        await self.sync_commands()
        if left_open:
            self._recovery = asyncio.create_task(
                close_open_jobs(self, self.services.repo, left_open, why="restart"), name="mmpp-recovery"
            )

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
        self.purge_log.cancel()
        self.forget_old_faces.cancel()
        self.services.faces.clear()
        self.services.results.clear()
        await super().close()

    @tasks.loop(minutes=1)
    async def forget_old_faces(self) -> None:
        """Reroll faces and kept portraits leave memory on time even when nobody touches the caches."""
        self.services.faces.sweep()
        self.services.results.sweep()

    @tasks.loop(hours=24)
    async def purge_log(self) -> None:
        """Retention: generation-log rows older than LOG_RETENTION_DAYS go, once a day."""
        try:
            removed = await self.services.repo.purge_log()
        except Exception:
            log.exception("log purge failed")
            return
        log_event(log, logging.INFO, "log purged", rows=removed, keep_days=self.services.repo.log_retention_days)

    async def sync_commands(self) -> None:
        guild_id = self.services.settings.discord_test_guild_id
        if guild_id:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
        else:
            synced = await self.tree.sync()
        log_event(log, logging.INFO, "commands synced", count=len(synced), guild=guild_id or "global")

    async def on_ready(self) -> None:
        log_event(log, logging.INFO, "connected", user=str(self.user), guilds=len(self.guilds))

    async def on_app_command_completion(
        self, interaction: discord.Interaction, command: app_commands.Command | app_commands.ContextMenu
    ) -> None:
        log_event(
            log, logging.INFO, "command", name=command.qualified_name, user=interaction.user.id,
            guild=interaction.guild_id,
        )

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await answer_error(interaction, error)

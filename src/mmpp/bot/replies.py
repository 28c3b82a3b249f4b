"""How the bot answers: ephemeral errors that lose nothing, and throttled progress edits."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable

import discord
from discord import app_commands
from PIL import Image

from mmpp.bot.words.i18n import tr, tr_error
from mmpp.errors import UserFacingError
from mmpp.logs import log_event

log = logging.getLogger(__name__)


async def defer(interaction: discord.Interaction) -> None:
    """Show "thinking…" at once (Discord wants an answer within 3 s), to the member alone: nothing is
    public until they press Post."""
    await interaction.response.defer(thinking=True, ephemeral=True)


class ReplyDeleted(Exception):
    """The reply being edited was deleted (Discord's "Unknown Message"): nobody is watching it."""


UNKNOWN_MESSAGE = 10008
# Progress previews go by this name; any other file on a reply is the result (`mmpp.bot.portrait.reach`).
PREVIEW_FILENAME = "preview.png"


async def send_error(interaction: discord.Interaction, message: str) -> bool:
    """An ephemeral message only the member sees. After a (private) deferral it replaces the
    "thinking…" reply, so the flow keeps to its one reply (what user-installed apps are allowed).
    False when the interaction can no longer reach them."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(message, ephemeral=True)
            return True
        if interaction.response.type == discord.InteractionResponseType.deferred_channel_message:
            await interaction.edit_original_response(content=message, attachments=[], view=None)
            return True
        await interaction.followup.send(message, ephemeral=True)
        return True
    except discord.HTTPException as exc:
        # The interaction token may have expired (15 min), or Discord keeps failing.
        log_event(log, logging.WARNING, "error reply failed", status=exc.status, message=message)
        return False


async def answer_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Whatever went wrong in a command or a button, the member gets one ephemeral sentence; only
    the unexpected is logged with its traceback."""
    original = getattr(error, "original", error)
    if isinstance(original, UserFacingError):
        message = tr_error(interaction, original)
        log_event(log, logging.INFO, "refused", code=original.code, user=interaction.user.id,
                  guild=interaction.guild_id)
    elif isinstance(error, app_commands.MissingPermissions):
        message = tr(interaction, "You need the Manage Server permission to change this server's portrait style.")
    elif isinstance(error, app_commands.NoPrivateMessage):
        message = tr(interaction, "This command works only in a server.")
    elif isinstance(error, app_commands.CheckFailure):
        message = tr(interaction, "You can't use this command here.")
    else:
        log.error("interaction failed", exc_info=original)
        message = tr(interaction, "Something went wrong on my side. It has been logged; please try again in a moment.")
    await send_error(interaction, message)


def png_file(image: Image.Image, filename: str) -> discord.File:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.seek(0)
    return discord.File(buffer, filename=filename)


class ProgressMessage:
    """Edits one deferred reply as a job moves, at most once per `interval_s` (Discord rate-limits
    edits). A throttled update is not lost: the newest preview waits for the next edit, and forced
    edits (a state change, the result) always go through.

    Progress is best effort: once an edit fails for good (discord.py has already retried it), no
    more progress edits are tried, and the result takes the delivery fallback. Only a deleted reply
    raises `ReplyDeleted`, because that means nobody is waiting."""

    def __init__(
        self, interaction: discord.Interaction, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interaction = interaction
        self.interval_s = interval_s
        self.clock = clock
        self._last = float("-inf")
        self._last_content: str | None = None
        self._preview: Image.Image | None = None
        self.broken = False

    async def show(
        self, content: str, *, preview: Image.Image | None = None, force: bool = False, clear_preview: bool = False
    ) -> None:
        if self.broken:
            return
        if preview is not None:
            self._preview = preview
        now = self.clock()
        if not force and now - self._last < self.interval_s:
            return
        if content == self._last_content and self._preview is None and not clear_preview:
            return
        kwargs: dict[str, object] = {}
        if clear_preview:
            kwargs["attachments"] = []
        elif self._preview is not None:
            kwargs["attachments"] = [png_file(self._preview, PREVIEW_FILENAME)]
        try:
            # Without `attachments`, Discord keeps the preview already shown.
            await self.interaction.edit_original_response(content=content, **kwargs)  # type: ignore[arg-type]
        except discord.HTTPException as exc:
            if exc.code == UNKNOWN_MESSAGE:
                raise ReplyDeleted() from exc
            self.broken = True
            log_event(log, logging.WARNING, "progress edits stopped", status=exc.status, code=exc.code)
            return
        self._last, self._last_content, self._preview = now, content, None

    async def finish(
        self, content: str, files: list[discord.File], view: discord.ui.View | None, embed: discord.Embed | None = None
    ) -> None:
        kwargs: dict[str, object] = {"view": view} if view is not None else {}
        if embed is not None:
            kwargs["embed"] = embed
        await self.interaction.edit_original_response(content=content, attachments=files, **kwargs)  # type: ignore[arg-type]

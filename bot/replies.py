"""How the bot answers: ephemeral errors that lose nothing, and throttled progress edits."""

from __future__ import annotations

import io
import logging
import time

import discord
from PIL import Image

from mmpp.logs import log_event

log = logging.getLogger(__name__)


async def defer(interaction: discord.Interaction, *, ephemeral: bool = False) -> None:
    """Show "thinking…" at once (Discord wants an answer within 3 s) and remember who may see it."""
    interaction.extras["ephemeral"] = ephemeral
    await interaction.response.defer(thinking=True, ephemeral=ephemeral)


async def send_error(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral message only the member sees; a public "thinking…" placeholder is removed first,
    so an error never stays in the channel."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(message, ephemeral=True)
            return
        if not interaction.extras.get("ephemeral", False):
            try:
                await interaction.delete_original_response()
            except discord.NotFound:
                pass
        await interaction.followup.send(message, ephemeral=True)
    except discord.HTTPException as exc:
        # The interaction token may have expired (15 min); nothing more can reach the member.
        log_event(log, logging.WARNING, "error reply failed", status=exc.status, message=message)


def png_file(image: Image.Image, filename: str) -> discord.File:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.seek(0)
    return discord.File(buffer, filename=filename)


class ProgressMessage:
    """Edits one deferred reply as a job moves, at most once per `interval_s` (Discord rate-limits
    edits), always letting a forced edit (a state change, the result) through."""

    def __init__(self, interaction: discord.Interaction, interval_s: float) -> None:
        self.interaction = interaction
        self.interval_s = interval_s
        self._last = float("-inf")
        self._last_content: str | None = None
        self.edits = 0

    async def show(self, content: str, *, preview: Image.Image | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        if content == self._last_content and preview is None:
            return
        attachments = [png_file(preview, "preview.png")] if preview is not None else []
        await self.interaction.edit_original_response(content=content, attachments=attachments)
        self._last, self._last_content = now, content
        self.edits += 1

    async def finish(self, content: str, file: discord.File, view: discord.ui.View | None) -> None:
        kwargs = {"view": view} if view is not None else {}
        await self.interaction.edit_original_response(content=content, attachments=[file], **kwargs)
        self.edits += 1

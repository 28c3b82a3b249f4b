"""A small discord.py bot written the way MMPP's bot is: app commands, a deferred reply edited with
progress and a result, a button view. The tests drive it through the stand-in."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from typing import Any

import discord
from discord import app_commands


@dataclass
class Seen:
    """What the bot's handlers observed, for the tests to compare with what the stand-in sent."""

    interactions: list[discord.Interaction] = field(default_factory=list)
    clicks: list[tuple[str, int]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    modal_values: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class ResultView(discord.ui.View):
    def __init__(self, seen: Seen, *, timeout: float | None) -> None:
        super().__init__(timeout=timeout)
        self.seen = seen

    @discord.ui.button(label="Again", custom_id="echo:again", style=discord.ButtonStyle.primary)
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.seen.clicks.append((button.custom_id or "", interaction.user.id))
        await interaction.response.defer()
        await interaction.followup.send("Only you can see this click.", ephemeral=True)

    @discord.ui.button(label="Done", custom_id="echo:done", style=discord.ButtonStyle.secondary)
    async def done(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.seen.clicks.append((button.custom_id or "", interaction.user.id))
        self.stop()
        await interaction.response.edit_message(content="Done.", view=None)


class StyleModal(discord.ui.Modal, title="Describe the style"):
    prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(label="Prompt", custom_id="style:prompt")

    def __init__(self, seen: Seen) -> None:
        super().__init__()
        self.seen = seen

    async def on_submit(self, interaction: discord.Interaction) -> None:
        self.seen.modal_values.append(self.prompt.value)
        await interaction.response.send_message(f"Saved {self.prompt.value!r}", ephemeral=True)


STYLES = ["simpsons", "sketch", "watercolour", "pixel"]


class EchoBot(discord.Client):
    def __init__(self, *, sync_guild: int | None = None, view_timeout: float | None = None) -> None:
        intents = discord.Intents.default()
        intents.members = True
        # READY is followed by GUILD_CREATEs; discord.py waits this long after the last one before
        # on_ready (2 s by default).
        super().__init__(intents=intents, guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.seen = Seen()
        self.sync_guild = sync_guild
        self.view_timeout = view_timeout
        self.synced: list[app_commands.AppCommand] = []
        self._add_commands()

    async def setup_hook(self) -> None:
        if self.sync_guild is None:
            self.synced = await self.tree.sync()
        else:
            guild = discord.Object(self.sync_guild)
            self.tree.copy_global_to(guild=guild)
            self.synced = await self.tree.sync(guild=guild)

    async def on_ready(self) -> None:
        self.seen.ready.set()

    def _add_commands(self) -> None:
        tree, seen = self.tree, self.seen

        @tree.error
        async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
            seen.errors.append(error)

        @tree.command(name="ping", description="Is the bot there?")
        async def ping(interaction: discord.Interaction) -> None:
            seen.interactions.append(interaction)
            await interaction.response.send_message("pong")

        @tree.command(name="echo-image", description="Send an image back")
        @app_commands.describe(image="Any image")
        async def echo_image(interaction: discord.Interaction, image: discord.Attachment) -> None:
            seen.interactions.append(interaction)
            await interaction.response.defer(thinking=True)
            data = await image.read()
            await interaction.edit_original_response(content="Working… step 1/2")
            await interaction.edit_original_response(content="Working… step 2/2")
            await interaction.edit_original_response(
                content="Here it is",
                attachments=[discord.File(io.BytesIO(data), filename="echo.png")],
                view=ResultView(seen, timeout=self.view_timeout),
            )
            await interaction.followup.send(f"Read {len(data)} bytes.", ephemeral=True)

        @tree.command(name="card", description="Answers with a file straight away")
        async def card(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(
                "card", file=discord.File(io.BytesIO(b"%PDF-1.4"), "card.pdf")
            )

        @tree.command(name="lifecycle", description="Defers, follows up, edits, reads and deletes")
        async def lifecycle(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await interaction.followup.send("first", ephemeral=False, wait=True)
            extra = await interaction.followup.send("extra", ephemeral=False, wait=True)
            await extra.edit(content="extra, edited")
            original = await interaction.original_response()
            seen.fetched.append(original.content)
            await interaction.delete_original_response()

        @tree.command(name="avatar-size", description="Download your avatar")
        async def avatar_size(interaction: discord.Interaction) -> None:
            seen.interactions.append(interaction)
            data = await interaction.user.display_avatar.read()
            await interaction.response.send_message(f"{len(data)} bytes")

        @tree.command(name="slow", description="Answers too late")
        async def slow(interaction: discord.Interaction) -> None:
            await asyncio.sleep(0.5)
            try:
                await interaction.response.send_message("late")
            except discord.NotFound as error:
                seen.errors.append(error)

        style = app_commands.Group(
            name="style",
            description="Server style",
            default_permissions=discord.Permissions(manage_guild=True),
        )
        preset = app_commands.Group(name="preset", description="Presets", parent=style)

        @preset.command(name="set", description="Set the server's style")
        async def style_set(interaction: discord.Interaction, name: str, strength: float = 0.8) -> None:
            seen.interactions.append(interaction)
            await interaction.response.send_message(f"style={name} strength={strength}", ephemeral=True)

        @style_set.autocomplete("name")
        async def style_names(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=s.title(), value=s) for s in STYLES if s.startswith(current)]

        @style.command(name="describe", description="Describe a style in words")
        async def style_describe(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(StyleModal(seen))

        tree.add_command(style)

        @tree.context_menu(name="Make their portrait")
        async def portrait_of(interaction: discord.Interaction, user: discord.Member | discord.User) -> None:
            seen.interactions.append(interaction)
            await interaction.response.send_message(f"portrait of {user.name}", ephemeral=True)

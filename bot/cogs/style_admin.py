"""/style: a server's admins choose the look every member's portrait gets (Manage Server only)."""

from __future__ import annotations

import asyncio
import io
from importlib import resources

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.profile import style_autocomplete
from bot.db import ResolvedPreset
from bot.db.repository import SeedPolicy
from bot.db.safety import ServerSafetyStore
from bot.portrait import PortraitOrder, admission, make_portrait
from bot.replies import defer
from bot.services import Services, services_of
from inference.preprocess import LocatedFace

SEED_POLICY_WORDS = {
    "random": "a new look every time",
    "fixed": "the same seed for everyone",
    "per_user": "each member always gets the same seed",
}


async def any_style_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """Every published style, hidden ones too: an admin must be able to pick one to show it again."""
    if not interaction.permissions.manage_guild:
        # Autocomplete skips the cog's permission check, and what a server hid is its admins' business.
        return await style_autocomplete(interaction, current)
    services = services_of(interaction)
    current = current.lower()
    choices = []
    for listing in await services.repo.list_styles(interaction.guild_id):
        if listing.name not in services.engine.catalog or current not in listing.name:
            continue
        title = services.engine.catalog.get(listing.name).definition.title
        choices.append(app_commands.Choice(name=title + ("" if listing.enabled else " (hidden)"), value=listing.name))
    return choices[:25]

SAFETY_WORDS = {
    False: "strict everywhere",
    True: (
        "relaxed in channels Discord marks age-restricted (NSFW): nudity may pass there, a picture that may "
        "show a child never does; strict in every other channel and in DMs"
    ),
}


def sample_face() -> bytes:
    """A public-domain portrait (NASA's astronaut photo) shipped with the bot for previews."""
    return resources.files("bot").joinpath("assets/sample_face.jpg").read_bytes()


def describe_preset(services: Services, preset: ResolvedPreset, where: str) -> discord.Embed:
    catalog = services.engine.catalog
    title = catalog.get(preset.style).definition.title if preset.style in catalog else preset.style
    embed = discord.Embed(title=f"{where}: {title}", colour=discord.Colour.blurple())
    embed.add_field(name="Style", value=f"`{preset.style}`")
    embed.add_field(name="Background", value=preset.background or "the style's own")
    embed.add_field(name="Framing", value=preset.framing or "the style's own")
    embed.add_field(name="Seeds", value=SEED_POLICY_WORDS.get(preset.seed_policy, preset.seed_policy))
    embed.add_field(name="Members may pick a style", value="yes" if preset.allow_member_choice else "no")
    source = {"channel": "this channel's override", "server": "the server preset", "default": "the bot's default"}
    footer = f"From {source.get(preset.source, preset.source)}"
    if preset.set_by:
        footer += f", set by user {preset.set_by}"
    embed.set_footer(text=footer)
    if preset.set_at:
        embed.timestamp = preset.set_at
    return embed


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class StyleCog(commands.GroupCog, group_name="style", group_description="Choose this server's portrait style"):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # default_permissions only hides the command in Discord's menu; this is the real gate.
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    @app_commands.command(name="set", description="Set the style every member gets here")
    @app_commands.describe(
        style="The style for everyone's portraits",
        channel="Give only this channel its own style (default: the whole server)",
        background="A background colour such as 'teal' or '#ffcc00'",
        framing="How the portrait is framed, e.g. 'close-up' or 'head and shoulders'",
        seed_policy="random: new look each time; fixed: same for all; per_user: stable per member",
        allow_member_choice="Let members pick another style with /profile's style option",
    )
    @app_commands.autocomplete(style=style_autocomplete)
    async def set_style(
        self,
        interaction: discord.Interaction,
        style: str,
        channel: discord.TextChannel | None = None,
        background: str | None = None,
        framing: str | None = None,
        seed_policy: SeedPolicy | None = None,
        allow_member_choice: bool | None = None,
    ) -> None:
        services = services_of(interaction)
        guild_id = interaction.guild_id
        assert guild_id is not None  # guild_only
        services.engine.catalog.get(style)
        if channel is not None:
            current = (await services.repo.list_channel_overrides(guild_id)).get(channel.id)
        else:
            current = await services.repo.get_server_preset(guild_id)
        # Options left empty keep what was set before, so changing one thing never resets another.
        policy = seed_policy or (current.seed_policy if current else "random")
        fields = {
            "background": background if background is not None else (current.background if current else None),
            "framing": framing if framing is not None else (current.framing if current else None),
            "seed_policy": policy,
            # A fixed or per-member seed survives unrelated edits; the repository draws a new one otherwise.
            "seed": current.seed if current is not None and current.seed_policy == policy else None,
            "allow_member_choice": (
                allow_member_choice if allow_member_choice is not None
                else (current.allow_member_choice if current else False)
            ),
            "set_by": interaction.user.id,
        }
        if channel is not None:
            preset = await services.repo.set_channel_override(guild_id, channel.id, style, **fields)
            where = f"#{channel.name}"
        else:
            preset = await services.repo.set_server_preset(guild_id, style, **fields)
            where = "This server"
        await interaction.response.send_message(
            f"Done. New portraits in {where.lower() if channel is None else where} use this look.",
            embed=describe_preset(services, preset, where),
            ephemeral=True,
        )

    @app_commands.command(name="show", description="Show the style portraits get in this channel")
    async def show(self, interaction: discord.Interaction) -> None:
        services = services_of(interaction)
        preset = await services.repo.resolve(interaction.guild_id, interaction.channel_id)
        overrides = await services.repo.list_channel_overrides(interaction.guild_id or 0)
        embed = describe_preset(services, preset, "This channel")
        safety = ServerSafetyStore(services.database.sessions)
        embed.add_field(name="Safety check", value=SAFETY_WORDS[await safety.relaxed_in_nsfw_channels(
            interaction.guild_id or 0)])
        if overrides:
            embed.add_field(
                name="Channels with their own style",
                value="\n".join(f"<#{cid}>: `{p.style}`" for cid, p in list(overrides.items())[:20]),
                inline=False,
            )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="list", description="List the styles, with a sample of each")
    async def list_styles(self, interaction: discord.Interaction) -> None:
        # Acknowledged first: reading ten sample pictures may take longer than Discord's 3 s.
        await defer(interaction, ephemeral=True)
        services = services_of(interaction)
        listings = await services.repo.list_styles(interaction.guild_id)
        embeds, files = [], []
        for listing in listings[:10]:  # Discord allows ten embeds per message
            if listing.name not in services.engine.catalog:
                continue
            style = services.engine.catalog.get(listing.name)
            state = ("" if listing.enabled else " (hidden on this server)") + (" (built in)" if style.builtin else "")
            embed = discord.Embed(
                title=f"{style.definition.title}{state}", description=style.description or None,
                colour=discord.Colour.green() if listing.enabled else discord.Colour.dark_grey(),
            )
            embed.add_field(name="Name", value=f"`{style.name}`")
            sample = await asyncio.to_thread(style.sample_png)  # decoded and re-encoded: only pixels leave
            if sample is not None:
                filename = f"sample-{style.name}.png"
                files.append(discord.File(io.BytesIO(sample), filename=filename))
                embed.set_thumbnail(url=f"attachment://{filename}")
            embeds.append(embed)
        if not embeds:
            await interaction.followup.send("No styles are published yet.", ephemeral=True)
            return
        await interaction.followup.send(embeds=embeds, files=files, ephemeral=True)

    @app_commands.command(name="preview", description="Draw a sample face in this channel's style")
    async def preview(self, interaction: discord.Interaction) -> None:
        services = services_of(interaction)

        async def face() -> LocatedFace:
            return await services.decoder.locate(sample_face())

        with admission(services, interaction.user.id):
            await defer(interaction, ephemeral=True)
            preset = await services.repo.resolve(interaction.guild_id, interaction.channel_id)
            # A preview uses the GPU like a portrait, so it counts against the same daily quotas.
            order = PortraitOrder(face=face, style=preset.style, preset=preset, buttons=False, kind="preview")
            await make_portrait(interaction, services, order)

    @app_commands.command(name="available", description="Show or hide one style on this server")
    @app_commands.autocomplete(style=any_style_autocomplete)
    async def available(self, interaction: discord.Interaction, style: str, shown: bool) -> None:
        services = services_of(interaction)
        await services.repo.set_style_enabled(interaction.guild_id or 0, style, shown, interaction.user.id)
        word = "shown to" if shown else "hidden from"
        await interaction.response.send_message(f"`{style}` is now {word} members here.", ephemeral=True)

    @app_commands.command(name="reset", description="Forget this server's style, channel styles and hidden styles")
    async def reset(self, interaction: discord.Interaction) -> None:
        services = services_of(interaction)
        await services.repo.reset_server(interaction.guild_id or 0)
        await ServerSafetyStore(services.database.sessions).forget(interaction.guild_id or 0)
        await interaction.response.send_message(
            f"Reset. Portraits here use the default style (`{services.repo.default_style}`) and the strict "
            "safety check again.",
            ephemeral=True,
        )

    @app_commands.command(name="nsfw", description="Relax the image safety check in channels Discord marks NSFW")
    @app_commands.describe(relax="On: nudity may pass in age-restricted channels. Off: strict everywhere (default)")
    async def nsfw(self, interaction: discord.Interaction, relax: bool) -> None:
        services = services_of(interaction)
        store = ServerSafetyStore(services.database.sessions)
        await store.set_relaxed_in_nsfw_channels(interaction.guild_id or 0, relax, set_by=interaction.user.id)
        off = services.settings.sources.safety_checker is None
        note = " (This bot's operator has turned the check off entirely.)" if off else ""
        await interaction.response.send_message(
            f"Done. The safety check is now {SAFETY_WORDS[relax]}.{note}", ephemeral=True
        )

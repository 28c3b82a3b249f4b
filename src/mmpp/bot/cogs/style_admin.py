"""/style: a server's admins choose the look every member's portrait gets (Manage Server only)."""

from __future__ import annotations

from importlib import resources

import discord
from discord import app_commands
from discord.ext import commands

from mmpp.bot.db import ResolvedPreset
from mmpp.bot.db.repository import SeedPolicy
from mmpp.bot.db.safety import ServerSafetyStore
from mmpp.bot.portrait.follow import make_portrait
from mmpp.bot.portrait.order import SampleOrder
from mmpp.bot.portrait.rules import MAX_TAKES, style_autocomplete, style_title, takes_for
from mmpp.bot.replies import defer
from mmpp.bot.services import Services, services_of
from mmpp.bot.style_cards import send_style_cards
from mmpp.bot.words import background_labels
from mmpp.bot.words.i18n import N_, name_str, text_str, tr
from mmpp.inference.preprocess import LocatedFace

SEED_POLICY_WORDS = {
    "random": N_("a new look every time"),
    "fixed": N_("the same seed for everyone"),
    "per_user": N_("each member always gets the same seed"),
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
        if listing.name not in services.queue.catalog or current not in listing.name:
            continue
        title = services.queue.catalog.get(listing.name).definition.title
        if not listing.enabled:
            title = tr(interaction, "{title} (hidden)", title=title)
        choices.append(app_commands.Choice(name=title, value=listing.name))
    return choices[:25]

UNLINKABLE_WORDS = {
    True: N_("on: a portrait face matching could tie to the photo is redrawn"),
    False: N_("off: the most likeness, even if face matching could tie a portrait to its photo"),
}


async def background_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The named backgrounds in the admin's language; whatever else they type is taken as English."""
    pairs = background_labels.choices(current, interaction)
    return [app_commands.Choice(name=name, value=value) for name, value in pairs]


SAFETY_WORDS = {
    False: N_("strict everywhere"),
    True: N_(
        "relaxed in channels Discord marks age-restricted (NSFW): nudity may pass there, a picture that may "
        "show a child never does; strict in every other channel and in DMs"
    ),
}
PUBLIC_WORDS = {
    False: N_("private until the member presses Post"),
    True: N_("posted in the channel as soon as they are drawn"),
}


def sample_face() -> bytes:
    """A public-domain portrait (NASA's astronaut photo) shipped with the bot for previews."""
    return resources.files("mmpp.bot").joinpath("assets/sample_face.jpg").read_bytes()


def describe_preset(
    interaction: discord.Interaction, services: Services, preset: ResolvedPreset, where: str
) -> discord.Embed:
    title = style_title(services, preset.style)
    embed = discord.Embed(title=f"{where}: {title}", colour=discord.Colour.blurple())
    embed.add_field(name=tr(interaction, "Style"), value=f"`{preset.style}`")
    background = background_labels.label(preset.background, interaction) if preset.background else None
    embed.add_field(name=tr(interaction, "Background"), value=background or tr(interaction, "the style's own"))
    embed.add_field(name=tr(interaction, "Framing"), value=preset.framing or tr(interaction, "the style's own"))
    embed.add_field(name=tr(interaction, "Seeds"), value=tr(interaction, SEED_POLICY_WORDS[preset.seed_policy]))
    choice = tr(interaction, "yes") if preset.allow_member_choice else tr(interaction, "no")
    embed.add_field(name=tr(interaction, "Members may pick a style"), value=choice)
    unlinkable = tr(interaction, UNLINKABLE_WORDS[preset.unlinkable])
    embed.add_field(name=tr(interaction, "Unlinkable portraits"), value=unlinkable)
    source = {
        "channel": N_("From this channel's override"), "server": N_("From the server preset"),
        "default": N_("From the bot's default"),
    }
    if preset.set_by:
        embed.add_field(name=tr(interaction, "Set by"), value=f"<@{preset.set_by}>")
    embed.set_footer(text=tr(interaction, source[preset.source]))
    if preset.set_at:
        embed.timestamp = preset.set_at
    return embed


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
@app_commands.allowed_installs(guilds=True, users=False)
class StyleCog(
    commands.GroupCog, group_name=name_str("style"), group_description=text_str("Choose this server's portrait style")
):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # default_permissions only hides the command in Discord's menu; this is the real gate.
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    @app_commands.command(name=name_str("set"), description=text_str("Set the look every member gets here"))
    @app_commands.rename(
        style=name_str("style"), channel=name_str("channel"), background=name_str("background"),
        framing=name_str("framing"), seed_policy=name_str("seed_policy"),
        allow_member_choice=name_str("allow_member_choice"), public=name_str("public"),
        relax_safety=name_str("relax_safety"), unlinkable=name_str("unlinkable"), candidates=name_str("candidates"),
    )
    @app_commands.describe(
        style=text_str("The style for everyone's portraits (empty: keep the current one)"),
        channel=text_str("Give only this channel its own style (default: the whole server)"),
        background=text_str("Pick a background, or write a colour or scene in English (e.g. 'teal', 'rainy window')"),
        framing=text_str("How the portrait is framed, e.g. 'close-up' or 'head and shoulders'"),
        seed_policy=text_str("random: new look each time; fixed: same for all; per_user: stable per member"),
        allow_member_choice=text_str("Let members pick another style with /profile's style option"),
        public=text_str("Whole server: post portraits in the channel at once instead of privately"),
        relax_safety=text_str("Whole server: let nudity pass the safety check in age-restricted channels"),
        unlinkable=text_str("Redraw portraits that face matching could tie to the member's photo (default: on)"),
        candidates=text_str("Whole server: takes per request, shown together for the member to pick from (1-4)"),
    )
    @app_commands.choices(seed_policy=[
        app_commands.Choice(name=text_str("random"), value="random"),
        app_commands.Choice(name=text_str("fixed"), value="fixed"),
        app_commands.Choice(name=text_str("per member"), value="per_user"),
    ])
    @app_commands.autocomplete(style=style_autocomplete, background=background_autocomplete)
    async def set_style(
        self,
        interaction: discord.Interaction,
        style: str | None = None,
        channel: discord.TextChannel | None = None,
        background: str | None = None,
        framing: str | None = None,
        seed_policy: str | None = None,
        allow_member_choice: bool | None = None,
        public: bool | None = None,
        relax_safety: bool | None = None,
        unlinkable: bool | None = None,
        candidates: app_commands.Range[int, 1, MAX_TAKES] | None = None,
    ) -> None:
        services = services_of(interaction)
        guild_id = interaction.guild_id
        assert guild_id is not None  # guild_only
        if style is not None:
            style = services.queue.catalog.get(style).name  # an old built-in name gets its new one
        if background is not None:
            # A label typed in any language, not picked from the list, still means its named background.
            background = background_labels.named(background) or background
        if channel is not None:
            current = (await services.repo.list_channel_overrides(guild_id)).get(channel.id)
        else:
            current = await services.repo.get_server_preset(guild_id)
        if style is None:
            style = current.style if current else (await services.repo.resolve(guild_id, None)).style
        services.queue.catalog.get(style)
        # Options left empty keep what was set before, so changing one thing never resets another.
        policy: SeedPolicy = seed_policy or (current.seed_policy if current else "random")  # type: ignore[assignment]
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
            "unlinkable": unlinkable if unlinkable is not None else (current.unlinkable if current else True),
            "set_by": interaction.user.id,
        }
        if channel is not None:
            preset = await services.repo.set_channel_override(guild_id, channel.id, style, **fields)
            where = f"#{channel.name}"
            done = tr(interaction, "Done. New portraits in {where} use this look.", where=where)
        else:
            preset = await services.repo.set_server_preset(guild_id, style, **fields)
            where = tr(interaction, "This server")
            done = tr(interaction, "Done. New portraits on this server use this look.")
        store = ServerSafetyStore(services.database.sessions)
        if public is not None or relax_safety is not None or candidates is not None:
            await store.set_options(
                guild_id, set_by=interaction.user.id, public_by_default=public, relax_in_nsfw_channels=relax_safety,
                candidates=candidates,
            )
        embed = describe_preset(interaction, services, preset, where)
        await add_server_choices(interaction, services, embed)
        await interaction.response.send_message(done, embed=embed, ephemeral=True)

    @app_commands.command(name=name_str("show"), description=text_str("Show the style portraits get in this channel"))
    async def show(self, interaction: discord.Interaction) -> None:
        services = services_of(interaction)
        preset = await services.repo.resolve(interaction.guild_id, interaction.channel_id)
        overrides = await services.repo.list_channel_overrides(interaction.guild_id or 0)
        embed = describe_preset(interaction, services, preset, tr(interaction, "This channel"))
        await add_server_choices(interaction, services, embed)
        if overrides:
            embed.add_field(
                name=tr(interaction, "Channels with their own style"),
                value="\n".join(f"<#{cid}>: `{p.style}`" for cid, p in list(overrides.items())[:20]),
                inline=False,
            )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name=name_str("list"), description=text_str("List the styles, with a sample of each"))
    async def list_styles(self, interaction: discord.Interaction) -> None:
        # Acknowledged before any database read or sample decoding: Discord allows 3 s.
        await interaction.response.defer(ephemeral=True, thinking=True)
        services = services_of(interaction)
        listings = await services.repo.list_styles(interaction.guild_id)
        shown = [(listing.name, listing.enabled) for listing in listings]
        await send_style_cards(interaction, services, shown, admin=True)

    @app_commands.command(name=name_str("preview"), description=text_str("Draw a sample face in this channel's style"))
    async def preview(self, interaction: discord.Interaction) -> None:
        services = services_of(interaction)

        async def face() -> LocatedFace:
            return await services.decoder.locate(sample_face())

        with services.admissions.admit(interaction.user.id):
            await defer(interaction)
            preset = await services.repo.resolve(interaction.guild_id, interaction.channel_id)
            # A preview uses the GPU like a portrait, so it counts against the same daily quotas.
            order = SampleOrder(face=face, style=preset.style, preset=preset)
            await make_portrait(interaction, services, order)

    @app_commands.command(name=name_str("available"), description=text_str("Show or hide one style on this server"))
    @app_commands.rename(style=name_str("style"), shown=name_str("shown"))
    @app_commands.describe(style=text_str("The style to show or hide"), shown=text_str("On: members may get it"))
    @app_commands.autocomplete(style=any_style_autocomplete)
    async def available(self, interaction: discord.Interaction, style: str, shown: bool) -> None:
        services = services_of(interaction)
        await services.repo.set_style_enabled(interaction.guild_id or 0, style, shown, interaction.user.id)
        if shown:
            text = tr(interaction, "`{style}` is now shown to members here.", style=style)
        else:
            text = tr(interaction, "`{style}` is now hidden from members here.", style=style)
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(
        name=name_str("reset"), description=text_str("Forget this server's style, channel styles and hidden styles")
    )
    async def reset(self, interaction: discord.Interaction) -> None:
        services = services_of(interaction)
        await services.repo.reset_server(interaction.guild_id or 0)
        await ServerSafetyStore(services.database.sessions).forget(interaction.guild_id or 0)
        await interaction.response.send_message(
            tr(interaction, "Reset. Portraits here use the default style (`{style}`), stay private until posted, and "
               "get the strict safety check again.", style=services.repo.default_style),
            ephemeral=True,
        )


async def add_server_choices(interaction: discord.Interaction, services: Services, embed: discord.Embed) -> None:
    """The server-wide switches of `/style set`: public by default, and the safety check."""
    store = ServerSafetyStore(services.database.sessions)
    guild_id = interaction.guild_id or 0
    embed.add_field(
        name=tr(interaction, "Finished portraits"),
        value=tr(interaction, PUBLIC_WORDS[await store.public_by_default(guild_id)]), inline=False,
    )
    embed.add_field(
        name=tr(interaction, "Takes per request"), value=str(await takes_for(services, guild_id)), inline=False
    )
    value = tr(interaction, SAFETY_WORDS[await store.relaxed_in_nsfw_channels(guild_id)])
    if services.settings.sources.safety_checker is None:
        value += " " + tr(interaction, "(This bot's operator has turned the check off entirely.)")
    embed.add_field(name=tr(interaction, "Safety check"), value=value, inline=False)

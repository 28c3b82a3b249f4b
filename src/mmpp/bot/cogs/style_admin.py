"""/style: a server's admins choose the look every member's portrait gets (Manage Server only)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

import discord
from discord import app_commands
from discord.ext import commands

from mmpp.bot.db.looks import SeedPolicy
from mmpp.bot.db.options import Declared, RoomOptions, ServerOptions, beyond_ceiling, capped, declared
from mmpp.bot.portrait.follow import make_portrait
from mmpp.bot.portrait.order import SampleOrder
from mmpp.bot.portrait.rules import (
    CHOICE_NAME_LENGTH,
    choice,
    room_preset,
    style_autocomplete,
    style_title,
)
from mmpp.bot.replies import defer
from mmpp.bot.services import Services, services_of
from mmpp.bot.style_cards import send_style_cards
from mmpp.bot.style_looks import add_channel_overrides, add_server_choices, describe_preset
from mmpp.bot.words import background_labels
from mmpp.bot.words.i18n import N_, name_str, text_str, tr
from mmpp.bot.words.markup import shortened
from mmpp.bot.words.style_words import title_of
from mmpp.errors import UserFacingError
from mmpp.inference.preprocess import LocatedFace
from mmpp.inference.styles import UnknownStyleError
from mmpp.settings import Settings


async def admin_style_choices(
    interaction: discord.Interaction, current: str, *, hidden: bool
) -> list[app_commands.Choice[str]]:
    """Published styles by title, found by title or id, for an admin to pick (hidden ones too where
    `hidden`): an admin never needs a style's id, so `/style show` names styles by title alone."""
    if not interaction.permissions.manage_guild:
        # Autocomplete skips the cog's permission check, and what a server hid is its admins' business.
        return await style_autocomplete(interaction, current)
    services = services_of(interaction)
    current = current.lower()
    choices = []
    for listing in await services.repo.list_styles(interaction.guild_id):
        if listing.name not in services.queue.catalog or not (listing.enabled or hidden):
            continue
        title = title_of(services.queue.catalog.get(listing.name).definition, interaction)
        if current not in listing.name and current not in title.lower():
            continue
        if not listing.enabled:
            # Shortened before the mark, so a long title still shows it is hidden.
            room = CHOICE_NAME_LENGTH - len(tr(interaction, "{title} (hidden)", title=""))
            title = tr(interaction, "{title} (hidden)", title=shortened(title, room))
        choices.append(choice(title, listing.name))
    return choices[:25]


async def any_style_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """Every published style, hidden ones too: an admin must be able to pick one to show it again."""
    return await admin_style_choices(interaction, current, hidden=True)


async def shown_style_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """`/style set`: the styles this server shows (a hidden one cannot be set), even where members may not pick."""
    return await admin_style_choices(interaction, current, hidden=False)


async def background_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The named backgrounds in the admin's language; whatever else they type is taken as English."""
    pairs = background_labels.choices(current, interaction)
    return [app_commands.Choice(name=name, value=value) for name, value in pairs]


DECLARED: tuple[Declared, ...] = (*declared(RoomOptions), *declared(ServerOptions))
KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY
F = TypeVar("F", bound=Callable[..., Any])


def declared_parameters(callback: F) -> F:
    """`/style set`'s parameters for the declared options, in place of the callback's `**options`.

    discord.py reads a command's parameters from its callback's signature, so the signature is
    written here from the declaration (`mmpp.bot.db.options`): each option is optional, and
    None (left empty) keeps what was set. Their names and descriptions go the same way."""
    signature = inspect.signature(callback)
    fixed = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    added = []
    for option in DECLARED:
        kind = option.type if option.how.limits is None else app_commands.Range[option.type, *option.how.limits]
        added.append(inspect.Parameter(option.name, KEYWORD_ONLY, default=None, annotation=kind | None))
    callback.__signature__ = signature.replace(parameters=[*fixed, *added])  # type: ignore[attr-defined]
    renamed = app_commands.rename(**{o.name: name_str(o.how.parameter) for o in DECLARED})
    described = app_commands.describe(**{o.name: text_str(o.how.describe) for o in DECLARED})
    return renamed(described(callback))  # type: ignore[no-any-return]


def services_of_bot(bot: commands.Bot) -> Services:
    return bot.services  # type: ignore[attr-defined,no-any-return]


def offer_within_ceilings(group: app_commands.Group | None, settings: Settings) -> None:
    """What Discord offers admins in `/style set`: a number no higher than its ceiling. This bot's own
    copy of the command is changed, never the class's (another bot in the process may have others)."""
    command = group.get_command("set") if group is not None else None
    assert isinstance(command, app_commands.Command)
    params = dict(command._params)
    for option in DECLARED:
        if option.how.limits is not None and option.how.ceiling is not None:
            most = min(option.how.limits[1], getattr(settings, option.how.ceiling))
            params[option.name] = dataclasses.replace(params[option.name], max_value=most)
    command._params = params


class BeyondCeiling(UserFacingError):
    code = "beyond_ceiling"


class StyleTyped(UserFacingError):
    code = "unknown_style"


def check_ceilings(services: Services, options: dict[str, Any]) -> None:
    """Refuse, in one line, a choice past a ceiling this bot's operator set (`Option.ceiling`)."""
    for option in DECLARED:
        value = options[option.name]
        if not beyond_ceiling(option, value, services.settings):
            continue
        if isinstance(value, bool):
            raise BeyondCeiling(
                N_("This bot's operator doesn't let servers set `{option}:{value}`."),
                option=option.how.parameter, value=str(value).lower(),
            )
        raise BeyondCeiling(
            N_("This bot's operator lets a server choose at most {most} for `{option}`."),
            option=option.how.parameter, most=getattr(services.settings, option.how.ceiling or ""),
        )


def sample_face() -> bytes:
    """A public-domain portrait (NASA's astronaut photo) shipped with the bot for previews."""
    return resources.files("mmpp.bot").joinpath("assets/sample_face.jpg").read_bytes()


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
@app_commands.allowed_installs(guilds=True, users=False)
class StyleCog(
    commands.GroupCog, group_name=name_str("style"), group_description=text_str("Choose this server's portrait style")
):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        super().__init__()

    async def cog_load(self) -> None:
        # On the bot that serves it (before its commands are synced), not wherever the cog is built.
        offer_within_ceilings(self.__cog_app_commands_group__, services_of_bot(self.bot).settings)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # default_permissions only hides the command in Discord's menu; this is the real gate.
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    @app_commands.command(name=name_str("set"), description=text_str("Set the look every member gets here"))
    @app_commands.rename(
        style=name_str("style"), channel=name_str("channel"), background=name_str("background"),
        framing=name_str("framing"), seed_policy=name_str("seed_policy"),
    )
    @app_commands.describe(
        style=text_str("The style for everyone's portraits (empty: keep the current one)"),
        channel=text_str("Give only this channel its own style (default: the whole server)"),
        background=text_str("Pick a background, or write a colour or scene in English (e.g. 'teal', 'rainy window')"),
        framing=text_str("How the portrait is framed, e.g. 'close-up' or 'head and shoulders'"),
        seed_policy=text_str("random: new look each time; fixed: same for all; per_user: stable per member"),
    )
    @app_commands.choices(seed_policy=[
        app_commands.Choice(name=text_str("random"), value="random"),
        app_commands.Choice(name=text_str("fixed"), value="fixed"),
        app_commands.Choice(name=text_str("per member"), value="per_user"),
    ])
    @app_commands.autocomplete(style=shown_style_autocomplete, background=background_autocomplete)
    @declared_parameters
    async def set_style(
        self,
        interaction: discord.Interaction,
        style: str | None = None,
        channel: discord.TextChannel | None = None,
        background: str | None = None,
        framing: str | None = None,
        seed_policy: str | None = None,
        **options: Any,
    ) -> None:
        services = services_of(interaction)
        guild_id = interaction.guild_id
        assert guild_id is not None  # guild_only
        check_ceilings(services, options)
        if style is not None:
            try:
                style = services.queue.catalog.get(style).name  # an old built-in name gets its new one
            except UnknownStyleError:
                # Typed, not picked from the list: the admin's own words back (a member's "it may have
                # been removed" would mislead about a typo), and where to pick from.
                raise StyleTyped(
                    N_("There's no style called '{style}'. Pick one from the list that opens as you type."),
                    style=style,
                ) from None
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
        room = {
            option.name: options[option.name] if options[option.name] is not None
            else (getattr(current, option.name) if current else option.default)
            for option in declared(RoomOptions)
        }
        fields = {
            "background": background if background is not None else (current.background if current else None),
            "framing": framing if framing is not None else (current.framing if current else None),
            "seed_policy": policy,
            # A fixed or per-member seed survives unrelated edits; the repository draws a new one otherwise.
            "seed": current.seed if current is not None and current.seed_policy == policy else None,
            **room,
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
        server_wide = {option.name: options[option.name] for option in declared(ServerOptions)}
        if any(value is not None for value in server_wide.values()):
            await services.repo.set_server_options(guild_id, set_by=interaction.user.id, **server_wide)
        embed = describe_preset(interaction, services, capped(preset, services.settings), where)
        await add_server_choices(interaction, services, embed)
        await interaction.response.send_message(done, embed=embed, ephemeral=True)

    @app_commands.command(name=name_str("show"), description=text_str("Show the style portraits get in this channel"))
    async def show(self, interaction: discord.Interaction) -> None:
        services = services_of(interaction)
        preset = await room_preset(services, interaction)
        overrides = await services.repo.list_channel_overrides(interaction.guild_id or 0)
        embed = describe_preset(interaction, services, preset, tr(interaction, "This channel"))
        await add_server_choices(interaction, services, embed)
        add_channel_overrides(interaction, services, embed, overrides)
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
            preset = await room_preset(services, interaction)
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
        title = style_title(services, style, interaction)
        if shown:
            text = tr(interaction, "**{title}** is now shown to members here.", title=title)
        else:
            text = tr(interaction, "**{title}** is now hidden from members here.", title=title)
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(
        name=name_str("reset"), description=text_str("Forget this server's style, channel styles and hidden styles")
    )
    async def reset(self, interaction: discord.Interaction) -> None:
        services = services_of(interaction)
        await services.repo.reset_server(interaction.guild_id or 0)
        await services.repo.forget_server_options(interaction.guild_id or 0)
        await interaction.response.send_message(
            tr(interaction, "Reset. Portraits here use the default style (**{title}**), stay private until posted, and "
               "get the strict safety check again.",
               title=style_title(services, services.repo.default_style, interaction)),
            ephemeral=True,
        )

"""Each option is declared once (`mmpp.bot.db.options`): `/style set` takes every declared option under
its declared name and description, left empty by default, and the models hold a column for each."""

from __future__ import annotations

import discord
from discord.ext import commands

from mmpp.bot.cogs.style_admin import StyleCog
from mmpp.bot.db.models import ChannelOverride, ServerOptionsRow, ServerPreset
from mmpp.bot.db.options import RoomOptions, ServerOptions, declared


def style_set_parameters() -> dict[str, discord.app_commands.Parameter]:
    cog = StyleCog(commands.Bot(command_prefix="!", intents=discord.Intents.none()))
    command = next(c for c in cog.__cog_app_commands_group__.commands if c.name == "set")  # type: ignore[union-attr]
    assert isinstance(command, discord.app_commands.Command)
    return {str(p.locale_name): p for p in command.parameters}


def test_style_set_takes_every_declared_option_optional_under_its_name_and_description() -> None:
    parameters = style_set_parameters()
    for option in (*declared(RoomOptions), *declared(ServerOptions)):
        parameter = parameters[option.how.parameter]
        assert not parameter.required and str(parameter.locale_description) == option.how.describe
        if option.how.limits is not None:
            assert (parameter.min_value, parameter.max_value) == option.how.limits
    # The look's own parameters come first, as before the options were declared.
    assert list(parameters)[:5] == ["style", "channel", "background", "framing", "seed_policy"]
    assert parameters["candidates"].type is discord.AppCommandOptionType.integer
    assert parameters["public"].type is discord.AppCommandOptionType.boolean


def test_every_declared_option_has_its_column() -> None:
    for model in (ServerPreset, ChannelOverride):
        for option in declared(RoomOptions):
            column = model.__table__.c[option.name]
            assert column.nullable is option.optional and isinstance(column.type, option.how.column)
    for option in declared(ServerOptions):
        column = ServerOptionsRow.__table__.c[option.name]
        assert column.nullable is option.optional and isinstance(column.type, option.how.column)

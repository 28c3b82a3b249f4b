"""Where a member's commands work: installable to a member's own account as well as to a server,
and usable wherever they are (servers, DMs, group DMs)."""

from __future__ import annotations

from discord import app_commands

EVERYWHERE_KW = {"guilds": True, "dms": True, "private_channels": True}
INSTALLS_KW = {"guilds": True, "users": True}
EVERYWHERE = app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True)
ANY_INSTALL = app_commands.AppInstallationType(guild=True, user=True)

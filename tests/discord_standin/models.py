"""The world the stand-in pretends Discord holds: users, guilds, roles, channels, members.

Plain mutable dataclasses: a test builds them through `StandIn.add_*` and passes them back to the
`send_*` methods; `payloads.py` turns them into the JSON discord.py parses.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from discord import Permissions

# Snowflakes with a real timestamp part, because discord.py derives `created_at` from them.
_DISCORD_EPOCH_MS = 1_420_070_400_000
_counter = itertools.count(1)


def snowflake() -> int:
    """A fresh, increasing Discord-style id."""
    return ((int(time.time() * 1000) - _DISCORD_EPOCH_MS) << 22) | (next(_counter) & 0x3FFFFF)


ADMINISTRATOR = Permissions(administrator=True).value
MANAGE_GUILD = Permissions(manage_guild=True).value
ALL_PERMISSIONS = Permissions.all().value
# What a fresh server grants @everyone.
DEFAULT_EVERYONE_PERMISSIONS = Permissions(
    create_instant_invite=True,
    change_nickname=True,
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_external_emojis=True,
    read_message_history=True,
    use_application_commands=True,
    connect=True,
    speak=True,
).value
# What a bot invited with the usual scopes holds in a channel (`app_permissions`).
DEFAULT_BOT_PERMISSIONS = Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_external_emojis=True,
    read_message_history=True,
    use_application_commands=True,
).value


class ChannelType:
    GUILD_TEXT = 0
    DM = 1
    GUILD_VOICE = 2
    GUILD_CATEGORY = 4
    GUILD_ANNOUNCEMENT = 5
    PUBLIC_THREAD = 11


@dataclass
class FakeUser:
    id: int
    username: str
    global_name: str | None = None
    avatar: str | None = None
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass
class FakeRole:
    id: int
    name: str
    permissions: int = 0
    position: int = 0
    color: int = 0
    hoist: bool = False
    managed: bool = False
    mentionable: bool = False


@dataclass
class FakeChannel:
    id: int
    name: str
    type: int = ChannelType.GUILD_TEXT
    guild_id: int | None = None
    position: int = 0
    parent_id: int | None = None
    nsfw: bool = False
    topic: str | None = None
    recipient: FakeUser | None = None  # DMs only

    @property
    def is_dm(self) -> bool:
        return self.type == ChannelType.DM


@dataclass
class FakeMember:
    guild: FakeGuild
    user: FakeUser
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = "2024-01-01T00:00:00.000000+00:00"
    guild_avatar: str | None = None

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def guild_id(self) -> int:
        return self.guild.id

    @property
    def permissions(self) -> int:
        """Guild-level permissions, computed the way Discord does before channel overwrites."""
        if self.guild.owner_id == self.user.id:
            return ALL_PERMISSIONS
        value = self.guild.everyone_role.permissions
        for role_id in self.role_ids:
            value |= self.guild.roles[role_id].permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, FakeRole] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)
    preferred_locale: str = "en-US"
    bot_permissions: int = DEFAULT_BOT_PERMISSIONS
    icon: str | None = None

    @property
    def everyone_role(self) -> FakeRole:
        # Discord gives @everyone the guild's own id.
        return self.roles[self.id]

    @property
    def text_channels(self) -> list[FakeChannel]:
        return [c for c in self.channels.values() if c.type == ChannelType.GUILD_TEXT]

    @property
    def default_channel(self) -> FakeChannel:
        channels = self.text_channels
        if not channels:
            raise LookupError(f"guild {self.name!r} has no text channel")
        return channels[0]

    def add_role(self, name: str, *, permissions: int = 0, color: int = 0) -> FakeRole:
        role = FakeRole(
            id=snowflake(), name=name, permissions=permissions, position=len(self.roles), color=color
        )
        self.roles[role.id] = role
        return role

    def add_channel(
        self, name: str, *, type: int = ChannelType.GUILD_TEXT, parent_id: int | None = None
    ) -> FakeChannel:
        channel = FakeChannel(
            id=snowflake(),
            name=name,
            type=type,
            guild_id=self.id,
            position=len(self.channels),
            parent_id=parent_id,
        )
        self.channels[channel.id] = channel
        return channel

    def member(self, user: FakeUser | int) -> FakeMember:
        user_id = user if isinstance(user, int) else user.id
        try:
            return self.members[user_id]
        except KeyError:
            raise LookupError(f"user {user_id} is not a member of guild {self.name!r}") from None

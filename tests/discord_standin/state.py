"""Everything the stand-in remembers, shared by its REST routes, its gateway and the test API."""

from __future__ import annotations

import hashlib
import io
import mimetypes
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .models import (
    DEFAULT_EVERYONE_PERMISSIONS,
    ChannelType,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    snowflake,
)
from .payloads import application_payload, attachment_payload, iso_now, user_payload
from .records import EPHEMERAL, LOADING, EventLog, InteractionRecord, UploadedFile, walk_components

JSON = dict[str, Any]

# Message flags a bot may set when sending (suppress embeds, ephemeral, suppress notifications,
# components v2); Discord drops the rest silently.
SENDABLE_FLAGS = (1 << 2) | EPHEMERAL | (1 << 12) | (1 << 15)
# On edits the ephemeral bit cannot change: a message is born ephemeral or not.
EDITABLE_FLAGS = (1 << 2) | (1 << 15)


class MessageType:
    DEFAULT = 0
    CHAT_INPUT_COMMAND = 20
    CONTEXT_MENU_COMMAND = 23


@dataclass
class CdnAsset:
    data: bytes
    content_type: str


@dataclass
class StoredMessage:
    """A message as Discord holds it; edits mutate it, actions keep snapshots of `payload()`."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    type: int = MessageType.DEFAULT
    content: str = ""
    embeds: list[JSON] = field(default_factory=list)
    components: list[JSON] = field(default_factory=list)
    attachments: list[JSON] = field(default_factory=list)
    flags: int = 0
    interaction: InteractionRecord | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    timestamp: str = field(default_factory=iso_now)
    edited_timestamp: str | None = None
    deleted: bool = False

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in walk_components(self.components) if "custom_id" in c]

    def payload(self) -> JSON:
        data: JSON = {
            "id": str(self.id),
            "type": self.type,
            "channel_id": str(self.channel_id),
            "author": user_payload(self.author),
            "content": self.content,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [dict(a) for a in self.attachments],
            "embeds": [dict(e) for e in self.embeds],
            "components": list(self.components),
            "pinned": False,
            "flags": self.flags,
            "position": 0,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
        record = self.interaction
        if record is not None:
            metadata: JSON = {
                "id": str(record.id),
                "type": record.type,
                "user": user_payload(record.user),
                "authorizing_integration_owners": record.payload.get("authorizing_integration_owners", {}),
            }
            if record.original_message_id is not None and record.original_message_id != self.id:
                metadata["original_response_message_id"] = str(record.original_message_id)
            if record.source_message_id is not None:
                metadata["interacted_message_id"] = str(record.source_message_id)
            data["interaction_metadata"] = metadata
        return data


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None


def _placeholder_avatar_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (128, 128), (88, 101, 242)).save(buffer, format="PNG")
    return buffer.getvalue()


class StandInState:
    def __init__(self, *, token: str, bot_name: str, application_flags: int) -> None:
        self.token = token
        # Discord's interaction tokens begin so today; Discord documents them as opaque strings.
        self.interaction_token_prefix = "aW50ZXJhY3Rpb246"
        self.application_id = snowflake()
        self.application_flags = application_flags
        self.bot_user = FakeUser(id=self.application_id, username=bot_name, bot=True)
        self.owner = FakeUser(id=snowflake(), username="app-owner")
        self.users: dict[int, FakeUser] = {self.bot_user.id: self.bot_user, self.owner.id: self.owner}
        self.guilds: dict[int, FakeGuild] = {}
        self.dm_channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, StoredMessage] = {}
        self.interactions: dict[int, InteractionRecord] = {}
        self.interactions_by_token: dict[str, InteractionRecord] = {}
        # Synced commands as Discord answered them: global under None, guild ones by guild id.
        self.commands: dict[int | None, list[JSON]] = {}
        self.command_syncs: list[tuple[int | None, list[JSON]]] = []
        self.cdn: dict[str, CdnAsset] = {}
        self.channel_messages: list[StoredMessage] = []
        self.log = EventLog()
        self.unknown_routes: list[tuple[str, str]] = []
        self.base_url = ""  # set once the server listens

    @property
    def cdn_base(self) -> str:
        return f"{self.base_url}/cdn"

    def application(self) -> JSON:
        return application_payload(
            self.application_id, self.bot_user, self.owner, flags=self.application_flags
        )

    # --- world ------------------------------------------------------------------------------

    def add_user(self, username: str, *, global_name: str | None = None, bot: bool = False) -> FakeUser:
        user = FakeUser(id=snowflake(), username=username, global_name=global_name, bot=bot)
        self.users[user.id] = user
        return user

    def set_avatar(self, user: FakeUser, data: bytes, content_type: str = "image/png") -> str:
        avatar_hash = hashlib.md5(data, usedforsecurity=False).hexdigest()
        user.avatar = avatar_hash
        self.cdn[f"avatars/{user.id}/{avatar_hash}"] = CdnAsset(data, content_type)
        return avatar_hash

    def add_guild(self, name: str, *, owner: FakeUser, channels: tuple[str, ...]) -> FakeGuild:
        guild = FakeGuild(id=snowflake(), name=name, owner_id=owner.id)
        guild.roles[guild.id] = FakeRole(
            id=guild.id, name="@everyone", permissions=DEFAULT_EVERYONE_PERMISSIONS
        )
        for channel in channels:
            guild.add_channel(channel)
        bot_role = guild.add_role(self.bot_user.username, permissions=guild.bot_permissions)
        bot_role.managed = True
        self.add_member(guild, self.bot_user, roles=[bot_role])
        if owner.id != self.bot_user.id:
            self.add_member(guild, owner)
        self.guilds[guild.id] = guild
        return guild

    def add_member(
        self,
        guild: FakeGuild,
        user: FakeUser,
        *,
        roles: list[FakeRole] | tuple[FakeRole, ...] = (),
        nick: str | None = None,
    ) -> FakeMember:
        self.users.setdefault(user.id, user)
        member = FakeMember(guild=guild, user=user, role_ids=[r.id for r in roles], nick=nick)
        guild.members[user.id] = member
        return member

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        channel = self.dm_channels.get(user.id)
        if channel is None:
            channel = FakeChannel(id=snowflake(), name="", type=ChannelType.DM, recipient=user)
            self.dm_channels[user.id] = channel
        return channel

    def channel(self, channel_id: int) -> FakeChannel | None:
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild.channels[channel_id]
        return next((c for c in self.dm_channels.values() if c.id == channel_id), None)

    # --- CDN --------------------------------------------------------------------------------

    def add_cdn_file(self, path: str, data: bytes, content_type: str) -> str:
        self.cdn[path] = CdnAsset(data, content_type)
        return f"{self.cdn_base}/{path}"

    def cdn_path(self, url: str) -> str | None:
        """The CDN path an attachment URL serves, or None for a URL off this CDN."""
        prefix = f"{self.cdn_base}/"
        return url[len(prefix):].split("?", 1)[0] if url.startswith(prefix) else None

    def drop_cdn_url(self, url: str) -> None:
        path = self.cdn_path(url)
        if path is not None:
            self.cdn.pop(path, None)

    def cdn_lookup(self, path: str) -> CdnAsset | None:
        asset = self.cdn.get(path)
        if asset is not None:
            return asset
        # Asset URLs name a format (`{hash}.png`, `.webp`, `.gif`) the real CDN converts to on the fly;
        # the stand-in stores one image per hash and serves it whatever the extension.
        stem, _, _ = path.rpartition(".")
        asset = self.cdn.get(stem)
        if asset is None and path.startswith("embed/avatars/"):
            asset = CdnAsset(_placeholder_avatar_png(), "image/png")
            self.cdn[stem] = asset
        return asset

    def make_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None = None,
        *,
        ephemeral: bool = False,
        description: str | None = None,
    ) -> JSON:
        attachment_id = snowflake()
        content_type = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        url = self.add_cdn_file(f"attachments/{attachment_id}/{filename}", data, content_type)
        size = _image_size(data) if content_type.startswith("image/") else None
        return attachment_payload(
            attachment_id=attachment_id,
            filename=filename,
            size=len(data),
            url=url,
            content_type=content_type,
            width=size[0] if size else None,
            height=size[1] if size else None,
            ephemeral=ephemeral,
            description=description,
        )

    def attach_upload(
        self,
        upload: UploadedFile,
        *,
        filename: str | None = None,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> tuple[JSON, UploadedFile]:
        """Turn an uploaded `files[n]` part into a message attachment served by the CDN."""
        name = filename or upload.filename
        # Discord ignores the part's own type (discord.py always sends octet-stream) and sniffs the name.
        content_type = mimetypes.guess_type(name)[0] or upload.content_type
        attachment = self.make_attachment(
            upload.data, name, content_type, ephemeral=ephemeral, description=description
        )
        stored = UploadedFile(
            filename=name,
            data=upload.data,
            content_type=attachment["content_type"],
            attachment_id=int(attachment["id"]),
            url=attachment["url"],
        )
        return attachment, stored

    # --- commands ---------------------------------------------------------------------------

    def find_command(self, name: str, *, guild_id: int | None, command_type: int) -> JSON | None:
        """The synced command a member would see: the guild's own first, then the global one."""
        scopes: list[int | None] = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for command in self.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == command_type:
                    return command
        return None

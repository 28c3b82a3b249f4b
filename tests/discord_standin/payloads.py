"""JSON builders for the objects Discord sends, shaped the way discord.py 2.7 parses them.

Fields discord.py reads with `data[...]` (and so crashes without) are always present; the rest
mirror what Discord sends today so that code written against the stand-in meets no surprises.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .models import ChannelType, FakeChannel, FakeGuild, FakeMember, FakeRole, FakeUser

JSON = dict[str, Any]

# Discord's upload limit for a server without boosts, sent to the bot as `attachment_size_limit`.
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
API_VERSION = 10


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def user_payload(user: FakeUser) -> JSON:
    return {
        "id": str(user.id),
        "username": user.username,
        "discriminator": "0",
        "global_name": user.global_name,
        "avatar": user.avatar,
        "avatar_decoration_data": None,
        "banner": None,
        "accent_color": None,
        "public_flags": 0,
        "flags": 0,
        "bot": user.bot,
        "system": False,
        "primary_guild": None,
        "collectibles": None,
    }


def current_user_payload(user: FakeUser) -> JSON:
    """`GET /users/@me` adds account fields to the plain user object."""
    return {**user_payload(user), "verified": True, "mfa_enabled": False, "locale": "en-US", "email": None}


def role_payload(role: FakeRole) -> JSON:
    return {
        "id": str(role.id),
        "name": role.name,
        "permissions": str(role.permissions),
        "position": role.position,
        "color": role.color,
        "colors": {"primary_color": role.color, "secondary_color": None, "tertiary_color": None},
        "hoist": role.hoist,
        "icon": None,
        "unicode_emoji": None,
        "managed": role.managed,
        "mentionable": role.mentionable,
        "flags": 0,
    }


def channel_payload(channel: FakeChannel) -> JSON:
    if channel.type == ChannelType.DM:
        recipients = [user_payload(channel.recipient)] if channel.recipient else []
        return {
            "id": str(channel.id),
            "type": ChannelType.DM,
            "last_message_id": None,
            "flags": 0,
            "recipients": recipients,
        }
    return {
        "id": str(channel.id),
        "type": channel.type,
        "guild_id": str(channel.guild_id),
        "name": channel.name,
        "position": channel.position,
        "permission_overwrites": [],
        "nsfw": channel.nsfw,
        "topic": channel.topic,
        "parent_id": None if channel.parent_id is None else str(channel.parent_id),
        "rate_limit_per_user": 0,
        "last_message_id": None,
        "flags": 0,
    }


def member_payload(member: FakeMember, *, with_user: bool = True, permissions: int | None = None) -> JSON:
    """A guild member; interactions add `permissions` (a string bit set), resolved data drops `user`."""
    data: JSON = {
        "nick": member.nick,
        "avatar": member.guild_avatar,
        "banner": None,
        "roles": [str(r) for r in member.role_ids],
        "joined_at": member.joined_at,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "flags": 0,
        "communication_disabled_until": None,
    }
    if with_user:
        data["user"] = user_payload(member.user)
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def guild_create_payload(guild: FakeGuild, *, include_all_members: bool) -> JSON:
    """GUILD_CREATE. Without the GUILD_MEMBERS intent Discord sends only the bot's own member."""
    members = list(guild.members.values())
    sent = members if include_all_members else [m for m in members if m.user.bot]
    return {
        "id": str(guild.id),
        "name": guild.name,
        "icon": guild.icon,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(guild.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "premium_progress_bar_enabled": False,
        "preferred_locale": guild.preferred_locale,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "vanity_url_code": None,
        "features": [],
        "max_members": 500000,
        "max_video_channel_users": 25,
        "application_id": None,
        "roles": [role_payload(r) for r in guild.roles.values()],
        "emojis": [],
        "stickers": [],
        "channels": [channel_payload(c) for c in guild.channels.values()],
        "threads": [],
        "members": [member_payload(m) for m in sent],
        "member_count": len(members),
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "large": False,
        "unavailable": False,
        "joined_at": iso_now(),
        "lazy": True,
    }


def application_payload(app_id: int, bot: FakeUser, owner: FakeUser, *, flags: int) -> JSON:
    return {
        "id": str(app_id),
        "name": bot.username,
        "icon": None,
        "description": "Discord stand-in application",
        "summary": "",
        "type": None,
        "bot": user_payload(bot),
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": user_payload(owner),
        "team": None,
        "verify_key": "0" * 64,
        "flags": flags,
        "hook": True,
        "interactions_endpoint_url": None,
        "redirect_uris": [],
        "tags": [],
        "approximate_guild_count": 1,
        "integration_types_config": {"0": {}, "1": {}},
    }


def attachment_payload(
    *,
    attachment_id: int,
    filename: str,
    size: int,
    url: str,
    content_type: str | None,
    width: int | None = None,
    height: int | None = None,
    ephemeral: bool = False,
    description: str | None = None,
) -> JSON:
    data: JSON = {
        "id": str(attachment_id),
        "filename": filename,
        "size": size,
        "url": url,
        "proxy_url": url,
        "content_type": content_type,
        "placeholder": None,
        "placeholder_version": 1,
        "flags": 0,
    }
    if width is not None and height is not None:
        data["width"] = width
        data["height"] = height
    if ephemeral:
        data["ephemeral"] = True
    if description is not None:
        data["description"] = description
    return data


def synced_command_payload(command: JSON, *, command_id: int, app_id: int, guild_id: int | None) -> JSON:
    """What `PUT .../commands` answers for one command: the request plus ids and defaults."""
    data: JSON = {
        "type": 1,
        "description": "",
        "options": [],
        "default_member_permissions": None,
        "nsfw": False,
        "name_localizations": None,
        "description_localizations": None,
        **command,
        "id": str(command_id),
        "application_id": str(app_id),
        "version": str(command_id),
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
    else:
        data.setdefault("integration_types", [0])
        data.setdefault("contexts", None)
    return data

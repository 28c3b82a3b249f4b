"""Builds INTERACTION_CREATE payloads the way Discord does for a member's action.

Options are checked against the commands the bot synced, as Discord's client would: a member can
only pick an option the command declares, must fill the required ones, cannot pick outside
`choices`, and never sees a command their permissions hide. A mistake there is a test bug or a
sync bug, so it raises at once instead of producing a payload Discord would never send.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from .models import DEFAULT_BOT_PERMISSIONS, FakeChannel, FakeGuild, FakeMember, FakeRole, FakeUser, snowflake
from .payloads import ATTACHMENT_SIZE_LIMIT, channel_payload, member_payload, role_payload, user_payload
from .records import InteractionKind, InteractionRecord, walk_components
from .state import StandInState, StoredMessage

JSON = dict[str, Any]


class OptionType:
    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


class InteractionType:
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class CommandType:
    CHAT_INPUT = 1
    USER = 2
    MESSAGE = 3


class Context:
    GUILD = 0
    BOT_DM = 1
    PRIVATE_CHANNEL = 2


# Component types a member can interact with, by their `type` in the message.
_CLICKABLE = {2, 3, 5, 6, 7, 8}


def is_attachment(value: Any) -> bool:
    return isinstance(value, dict) and {"id", "filename", "url"} <= value.keys()


class Resolved:
    """Collects `data.resolved`, which Discord fills for every snowflake-valued option."""

    def __init__(self, guild: FakeGuild | None) -> None:
        self.guild = guild
        self.data: dict[str, dict[str, JSON]] = {}

    def _put(self, kind: str, key: int | str, value: JSON) -> None:
        self.data.setdefault(kind, {})[str(key)] = value

    def user(self, who: FakeUser | FakeMember) -> str:
        user = who.user if isinstance(who, FakeMember) else who
        self._put("users", user.id, user_payload(user))
        member = who if isinstance(who, FakeMember) else None
        if member is None and self.guild is not None:
            member = self.guild.members.get(user.id)
        if member is not None:
            self._put(
                "members", user.id, member_payload(member, with_user=False, permissions=member.permissions)
            )
        return str(user.id)

    def role(self, role: FakeRole) -> str:
        self._put("roles", role.id, role_payload(role))
        return str(role.id)

    def channel(self, channel: FakeChannel) -> str:
        data = {k: v for k, v in channel_payload(channel).items() if k in ("id", "name", "type", "parent_id")}
        data["permissions"] = str((1 << 53) - 1)
        self._put("channels", channel.id, data)
        return str(channel.id)

    def attachment(self, attachment: JSON) -> str:
        self._put("attachments", attachment["id"], dict(attachment))
        return str(attachment["id"])

    def message(self, message: StoredMessage) -> str:
        self._put("messages", message.id, message.payload())
        return str(message.id)


def _infer_type(value: Any) -> int:
    if is_attachment(value):
        return OptionType.ATTACHMENT
    if isinstance(value, FakeUser | FakeMember):
        return OptionType.USER
    if isinstance(value, FakeRole):
        return OptionType.ROLE
    if isinstance(value, FakeChannel):
        return OptionType.CHANNEL
    if isinstance(value, bool):
        return OptionType.BOOLEAN
    if isinstance(value, int):
        return OptionType.INTEGER
    if isinstance(value, float):
        return OptionType.NUMBER
    if isinstance(value, str):
        return OptionType.STRING
    raise TypeError(f"cannot tell the Discord option type of {value!r}")


def _encode_value(name: str, option_type: int, value: Any, resolved: Resolved) -> Any:
    def wrong() -> TypeError:
        return TypeError(f"option {name!r} (type {option_type}) cannot take {value!r}")

    if option_type == OptionType.ATTACHMENT:
        if not is_attachment(value):
            raise wrong()
        return resolved.attachment(value)
    if option_type == OptionType.USER:
        if not isinstance(value, FakeUser | FakeMember):
            raise wrong()
        return resolved.user(value)
    if option_type == OptionType.ROLE:
        if not isinstance(value, FakeRole):
            raise wrong()
        return resolved.role(value)
    if option_type == OptionType.MENTIONABLE:
        if isinstance(value, FakeRole):
            return resolved.role(value)
        if isinstance(value, FakeUser | FakeMember):
            return resolved.user(value)
        raise wrong()
    if option_type == OptionType.CHANNEL:
        if not isinstance(value, FakeChannel):
            raise wrong()
        return resolved.channel(value)
    if option_type == OptionType.BOOLEAN:
        if not isinstance(value, bool):
            raise wrong()
        return value
    if option_type == OptionType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong()
        return value
    if option_type == OptionType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong()
        return value
    if option_type == OptionType.STRING:
        if not isinstance(value, str):
            raise wrong()
        return value
    raise wrong()


def encode_options(
    values: Mapping[str, Any],
    schema: list[JSON] | None,
    resolved: Resolved,
    *,
    focused: str | None = None,
    where: str,
) -> list[JSON]:
    """Option payloads for one (sub)command level; `schema` is the synced option list, if known."""
    by_name = {o["name"]: o for o in schema} if schema is not None else None
    if by_name is not None:
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise ValueError(f"{where} has no option(s) {unknown}; it declares {sorted(by_name)}")
        if focused is None:
            missing = [n for n, o in by_name.items() if o.get("required") and n not in values]
            if missing:
                raise ValueError(f"{where} requires option(s) {missing}")
    out: list[JSON] = []
    for name, value in values.items():
        declared = by_name[name] if by_name is not None else None
        option_type = declared["type"] if declared is not None else _infer_type(value)
        if name == focused:
            # While typing, Discord sends the raw partial text whatever the option's type.
            out.append({"name": name, "type": option_type, "value": str(value), "focused": True})
            continue
        encoded = _encode_value(name, option_type, value, resolved)
        choices = (declared or {}).get("choices")
        if choices and encoded not in [c["value"] for c in choices]:
            allowed = [c["value"] for c in choices]
            raise ValueError(f"{where}: {encoded!r} is not one of the choices {allowed} for {name!r}")
        out.append({"name": name, "type": option_type, "value": encoded})
    return out


def nest_subcommands(
    path: list[str],
    values: Mapping[str, Any],
    command: JSON | None,
    resolved: Resolved,
    *,
    focused: str | None,
) -> list[JSON]:
    """`/style set name:x` arrives as options [{type 1, name 'set', options [...]}], one level per word."""
    schema: list[JSON] | None = None if command is None else list(command.get("options") or [])
    where = f"/{path[0]}"
    return _nest(path[1:], values, schema, resolved, focused=focused, where=where)


def _nest(
    rest: list[str],
    values: Mapping[str, Any],
    schema: list[JSON] | None,
    resolved: Resolved,
    *,
    focused: str | None,
    where: str,
) -> list[JSON]:
    if not rest:
        return encode_options(values, schema, resolved, focused=focused, where=where)
    name = rest[0]
    where = f"{where} {name}"
    child: JSON | None = None
    if schema is not None:
        child = next((o for o in schema if o["name"] == name and o["type"] in (1, 2)), None)
        if child is None:
            subs = [o["name"] for o in schema if o["type"] in (1, 2)]
            raise ValueError(f"{where}: no such subcommand; the command has {subs}")
    option_type = child["type"] if child is not None else (2 if len(rest) > 1 else 1)
    child_schema = None if child is None else list(child.get("options") or [])
    inner = _nest(rest[1:], values, child_schema, resolved, focused=focused, where=where)
    return [{"name": name, "type": option_type, "options": inner}]


def find_clickable(message: StoredMessage, custom_id: str) -> JSON:
    components = [c for c in walk_components(message.components) if c.get("type") in _CLICKABLE]
    for component in components:
        if component.get("custom_id") == custom_id:
            if component.get("disabled"):
                raise ValueError(f"component {custom_id!r} on message {message.id} is disabled")
            return component
    available = [c.get("custom_id") for c in components]
    raise ValueError(f"message {message.id} has no component {custom_id!r}; it has {available}")


class InteractionFactory:
    def __init__(self, state: StandInState) -> None:
        self.state = state

    def context_for(
        self, user: FakeUser | FakeMember, guild_id: int | None, channel_id: int | None
    ) -> tuple[FakeUser, FakeGuild | None, FakeMember | None, FakeChannel]:
        """Who acts where: a member in a guild channel, or a user in their DM with the bot."""
        if isinstance(user, FakeMember):
            if guild_id is not None and guild_id != user.guild_id:
                raise ValueError(
                    f"member {user.user.username} belongs to guild {user.guild_id}, not {guild_id}"
                )
            guild_id = user.guild_id
        plain = user.user if isinstance(user, FakeMember) else user
        if guild_id is None:
            channel = self.state.dm_channel(plain)
            if channel_id is not None and channel_id != channel.id:
                raise ValueError("a DM interaction happens in the user's DM channel with the bot")
            return plain, None, None, channel
        guild = self.state.guilds.get(guild_id)
        if guild is None:
            raise LookupError(f"no guild {guild_id}; add it with standin.add_guild()")
        member = guild.member(plain)
        if channel_id is None:
            channel = guild.default_channel
        elif channel_id in guild.channels:
            channel = guild.channels[channel_id]
        else:
            raise LookupError(f"guild {guild.name!r} has no channel {channel_id}")
        return plain, guild, member, channel

    def build(
        self,
        *,
        kind: InteractionKind,
        type: int,
        data: JSON,
        user: FakeUser,
        guild: FakeGuild | None,
        member: FakeMember | None,
        channel: FakeChannel,
        permissions: int | None = None,
        app_permissions: int | None = None,
        locale: str = "en-US",
        context: int | None = None,
        message: StoredMessage | None = None,
        installed_by: str = "guild",
        owners: JSON | None = None,
    ) -> InteractionRecord:
        state = self.state
        payload: JSON = {
            "id": str(snowflake()),
            "application_id": str(state.application_id),
            "type": type,
            "data": data,
            "token": state.interaction_token_prefix + secrets.token_urlsafe(48),
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "channel_id": str(channel.id),
        }
        if guild is not None and member is not None:
            member_permissions = member.permissions if permissions is None else permissions
            bot_permissions = guild.bot_permissions if app_permissions is None else app_permissions
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
                guild_locale=guild.preferred_locale,
                member=member_payload(member, permissions=member_permissions),
                channel={**channel_payload(channel), "permissions": str(member_permissions)},
                app_permissions=str(bot_permissions),
                authorizing_integration_owners={"0": str(guild.id)},
                context=Context.GUILD if context is None else context,
            )
            if installed_by == "user":
                # Run through the member's own install of the app: Discord names the user (key "1"),
                # not the guild, as what authorized it (the server need not have the app at all).
                payload["authorizing_integration_owners"] = {"1": str(user.id)}
        else:
            # In the bot's DM the guild-install owner is "0": there is no guild.
            payload.update(
                user=user_payload(user),
                channel=channel_payload(channel),
                app_permissions=str(DEFAULT_BOT_PERMISSIONS if app_permissions is None else app_permissions),
                authorizing_integration_owners={"0": "0"},
                context=Context.BOT_DM if context is None else context,
            )
        if owners is not None:
            payload["authorizing_integration_owners"] = dict(owners)
        if message is not None:
            payload["message"] = message.payload()
        record = InteractionRecord(
            kind=kind,
            payload=payload,
            user=user,
            log=state.log,
            source_message_id=None if message is None else message.id,
        )
        state.interactions[record.id] = record
        state.interactions_by_token[record.token] = record
        return record

    def check_command_available(
        self, command: JSON, *, member: FakeMember | None, context: int, enforce_permissions: bool
    ) -> None:
        name = command["name"]
        if context != Context.GUILD:
            contexts = command.get("contexts")
            if command.get("dm_permission") is False or (contexts is not None and context not in contexts):
                raise PermissionError(f"/{name} is not available in DMs (contexts={contexts})")
        required = command.get("default_member_permissions")
        if enforce_permissions and member is not None and required not in (None, ""):
            needed = int(required)
            if member.permissions & needed != needed:
                raise PermissionError(
                    f"{member.user.username} cannot see /{name}: it needs permissions {needed:#x} "
                    f"(default_member_permissions) and they have {member.permissions:#x}; pass "
                    "enforce_permissions=False to model a server that granted it in Integrations settings"
                )

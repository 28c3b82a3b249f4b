"""`StandIn`: a Discord stand-in on 127.0.0.1 that the real discord.py client can log in to, and the
test API that plays the members who use the bot.

    async with StandIn() as standin:
        guild = standin.add_guild("Art Club")
        member = standin.add_member(guild, standin.add_user("ana"))
        async with running_client(bot, standin):
            interaction = await standin.send_slash_command(
                "profile", attachments={"selfie": ("me.jpg", jpeg)}, user=member
            )
            final = await interaction.wait_for_final_file(timeout=60)
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from .faults import Fault, StreamedAsset
from .gateway import Gateway
from .interactions import (
    CommandType,
    Context,
    InteractionFactory,
    InteractionType,
    Resolved,
    find_clickable,
    is_attachment,
    nest_subcommands,
)
from .models import FakeChannel, FakeGuild, FakeMember, FakeRole, FakeUser
from .payloads import ATTACHMENT_SIZE_LIMIT
from .records import BotAction, CallbackType, EventLog, InteractionRecord, walk_components
from .rest import RestApi
from .state import StandInState, StoredMessage

JSON = dict[str, Any]
# `(filename, bytes)` or `(filename, bytes, content_type)`, or an attachment from register_attachment.
AttachmentSpec = JSON | tuple[str, bytes] | tuple[str, bytes, str]
MessageRef = BotAction | StoredMessage | InteractionRecord | int

DEFAULT_TOKEN = "MTE.stand.in"
# An unverified bot: GATEWAY_GUILD_MEMBERS_LIMITED, GATEWAY_MESSAGE_CONTENT_LIMITED,
# APPLICATION_COMMAND_BADGE.
DEFAULT_APPLICATION_FLAGS = (1 << 15) | (1 << 19) | (1 << 23)


class StandIn:
    """A Discord stand-in: REST under /api/v10, a gateway at /gateway, a CDN under /cdn.

    Configure the world (users, guilds, members, avatars) before the client connects: READY and
    GUILD_CREATE describe it once, as Discord does.
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_name: str = "MMPP",
        application_flags: int = DEFAULT_APPLICATION_FLAGS,
        callback_deadline_s: float | None = 3.0,
        require_synced_commands: bool = True,
        heartbeat_interval_ms: int = 41_250,
        resume_gateway_url: str | None = None,
        shard_count: int = 1,
    ) -> None:
        self.state = StandInState(token=token, bot_name=bot_name, application_flags=application_flags)
        self.require_synced_commands = require_synced_commands
        self.gateway = Gateway(
            self.state,
            heartbeat_interval_ms=heartbeat_interval_ms,
            resume_gateway_url=resume_gateway_url,
            own_url=lambda: self.gateway_url,
        )
        self.rest = RestApi(
            self.state,
            callback_deadline_s=callback_deadline_s,
            gateway_url=lambda: self.gateway_url,
            shard_count=shard_count,
        )
        self._factory = InteractionFactory(self.state)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        # Discord takes requests as large as its attachments allow (ten files), not aiohttp's 1 MB default.
        app = web.Application(client_max_size=10 * ATTACHMENT_SIZE_LIMIT + 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/gateway/", self.gateway.handle)
        self.rest.add_routes(app)
        # Binding the socket ourselves gives a free port without reaching into aiohttp internals.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        self.state.base_url = f"http://127.0.0.1:{self._port}"
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self.state.log.add("standin", f"listening on {self.base_url}")

    async def stop(self) -> None:
        if self._runner is None:
            return
        await self.gateway.close()
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- where things are -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the stand-in is not running")
        return self.state.base_url

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    @property
    def cdn_base(self) -> str:
        return f"{self.base_url}/cdn"

    @property
    def token(self) -> str:
        return self.state.token

    @property
    def application_id(self) -> int:
        return self.state.application_id

    @property
    def bot_user(self) -> FakeUser:
        return self.state.bot_user

    @property
    def log(self) -> EventLog:
        return self.state.log

    @property
    def unknown_routes(self) -> list[tuple[str, str]]:
        """REST calls the bot made that the stand-in has no route for."""
        return self.state.unknown_routes

    @property
    def server_errors(self) -> list[str]:
        """Exceptions inside the stand-in's own handlers: stand-in bugs, never the bot's."""
        return self.rest.server_errors

    @property
    def interactions(self) -> list[InteractionRecord]:
        return list(self.state.interactions.values())

    # --- the world --------------------------------------------------------------------------

    def add_user(
        self, username: str, *, global_name: str | None = None, avatar: bytes | None = None
    ) -> FakeUser:
        user = self.state.add_user(username, global_name=global_name)
        if avatar is not None:
            self.set_avatar(user, avatar)
        return user

    def set_avatar(self, user: FakeUser, data: bytes, content_type: str = "image/png") -> str:
        """Give `user` an avatar served at `/cdn/avatars/{user_id}/{hash}.png`; returns the hash."""
        return self.state.set_avatar(user, data, content_type)

    def avatar_url(self, user: FakeUser) -> str:
        if user.avatar is None:
            raise LookupError(f"{user.username} has no avatar")
        return f"{self.cdn_base}/avatars/{user.id}/{user.avatar}.png"

    def add_guild(
        self, name: str, *, owner: FakeUser | None = None, channels: Sequence[str] = ("general",)
    ) -> FakeGuild:
        """A guild with @everyone, the given text channels, the bot as a member and an owner."""
        owner = owner or self.state.add_user(f"{name.lower().replace(' ', '-')}-owner")
        return self.state.add_guild(name, owner=owner, channels=tuple(channels))

    def add_role(self, guild: FakeGuild, name: str, *, permissions: int = 0) -> FakeRole:
        return guild.add_role(name, permissions=permissions)

    def add_member(
        self, guild: FakeGuild, user: FakeUser, *, roles: Sequence[FakeRole] = (), nick: str | None = None
    ) -> FakeMember:
        return self.state.add_member(guild, user, roles=tuple(roles), nick=nick)

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        return self.state.dm_channel(user)

    def register_attachment(
        self, data: bytes, filename: str, content_type: str | None = None, *, claimed_size: int | None = None
    ) -> JSON:
        """An attachment object whose `url` serves `data` from the stand-in's CDN; `claimed_size`
        makes it lie about its size, as a hostile client can."""
        attachment = self.state.make_attachment(data, filename, content_type, ephemeral=True)
        if claimed_size is not None:
            attachment["size"] = claimed_size
        return attachment

    def register_streamed_attachment(
        self, filename: str, stream: StreamedAsset, *, claimed_size: int | None = None
    ) -> JSON:
        """An attachment whose CDN body is `stream` (huge, slow, or both), generated as it is read."""
        attachment = self.register_attachment(stream.prefix, filename, stream.content_type, claimed_size=claimed_size)
        path = self.state.cdn_path(attachment["url"])
        assert path is not None
        self.rest.streams[path] = stream
        return attachment

    def forget(self, record: InteractionRecord) -> None:
        """Drop what the stand-in keeps about one finished interaction: the record, its messages,
        and the CDN files it sent or uploaded. Long soaks call it, so that what they measure is the
        bot's memory, not the stand-in's."""
        state = self.state
        state.interactions.pop(record.id, None)
        state.interactions_by_token.pop(record.token, None)
        urls = [a.get("url", "") for a in ((record.data.get("resolved") or {}).get("attachments") or {}).values()]
        for message_id in record.message_ids:
            message = state.messages.pop(message_id, None)
            if message is not None:
                urls += [a.get("url", "") for a in message.attachments]
        for url in urls:
            path = state.cdn_path(url)
            if path is not None:
                state.cdn.pop(path, None)
                self.rest.streams.pop(path, None)

    # --- faults -----------------------------------------------------------------------------

    def inject_fault(self, method: str, path: str, status: int, **options: Any) -> Fault:
        """From now on, `method` requests whose path matches the regex `path` answer `status`
        (see `Fault` for `times`, `retry_after`, `via`, `code`). Returns the fault, which counts its hits."""
        fault = Fault(method, path, status, **options)
        self.rest.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.rest.faults.clear()

    @staticmethod
    def original_reply_path(record: InteractionRecord) -> str:
        """The regex for edits of `record`'s original reply (what the bot's final edit hits)."""
        return rf"/webhooks/\d+/{re.escape(record.token)}/messages/@original$"

    @property
    def channel_messages(self) -> list[StoredMessage]:
        """Messages the bot posted with its own token (channel posts and DMs), in order."""
        return list(self.state.channel_messages)

    def public_messages(self) -> list[StoredMessage]:
        """Every bot message the others in a server channel can see, in order: interaction replies,
        follow-ups and channel posts alike, "thinking…" placeholders included; not ephemeral ones
        (flag 64), deleted ones, or anything in a DM."""
        dms = {c.id for c in self.state.dm_channels.values()}
        return [
            m for m in self.state.messages.values()
            if not m.ephemeral and not m.deleted and m.channel_id not in dms and m.guild_id is not None
        ]

    def message(self, message_id: int) -> StoredMessage:
        try:
            return self.state.messages[message_id]
        except KeyError:
            raise LookupError(f"no message {message_id}") from None

    # --- commands ---------------------------------------------------------------------------

    def synced_commands(self, guild: FakeGuild | int | None = None) -> list[JSON]:
        """The commands as last synced (global ones, or one guild's), as Discord stored them."""
        guild_id = guild.id if isinstance(guild, FakeGuild) else guild
        return list(self.state.commands.get(guild_id, []))

    @property
    def command_syncs(self) -> list[tuple[int | None, list[JSON]]]:
        """Every `PUT .../commands` body in order, with its guild id (None = global)."""
        return list(self.state.command_syncs)

    async def wait_for_commands(
        self, *names: str, guild: FakeGuild | int | None = None, timeout: float = 10.0
    ) -> list[JSON]:
        """Wait until the bot has synced commands with all of `names` (in `guild`, or globally)."""
        deadline = time.monotonic() + timeout
        while True:
            synced = self.synced_commands(guild)
            # With no names, any sync will do.
            if (set(names) <= {c["name"] for c in synced}) if names else synced:
                return synced
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"commands {names} not synced within {timeout}s; synced: "
                    f"{[c['name'] for c in synced]}\n{self.log.tail(15)}"
                )
            await asyncio.sleep(0.02)

    def _command(self, name: str, *, guild: FakeGuild | None, command_type: int) -> JSON | None:
        command = self.state.find_command(
            name, guild_id=None if guild is None else guild.id, command_type=command_type
        )
        if command is None and self.require_synced_commands:
            where = "globally" if guild is None else f"in guild {guild.name!r} or globally"
            known = [c["name"] for c in self.synced_commands(guild)] + [
                c["name"] for c in self.synced_commands()
            ]
            raise LookupError(
                f"no command {name!r} (type {command_type}) synced {where}; synced: {sorted(set(known))}. "
                "Members only see synced commands (StandIn(require_synced_commands=False) skips this check)."
            )
        return command

    def _command_data(self, command: JSON | None, name: str, command_type: int) -> JSON:
        data: JSON = {"id": command["id"] if command else "0", "name": name, "type": command_type}
        if command is not None and command.get("guild_id") is not None:
            # discord.py finds guild commands by this key; without it it looks among global ones.
            data["guild_id"] = command["guild_id"]
        return data

    # --- playing members --------------------------------------------------------------------

    async def send_slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: FakeUser | FakeMember,
        guild_id: int | None = None,
        channel_id: int | None = None,
        attachments: Mapping[str, AttachmentSpec] | None = None,
        permissions: int | None = None,
        app_permissions: int | None = None,
        locale: str = "en-US",
        context: int | None = None,
        enforce_permissions: bool = True,
        installed_by: str = "guild",
    ) -> InteractionRecord:
        """A member runs `/name`. `name` may hold subcommands: "style set" → /style set.
        `installed_by="user"`: through the member's own install of the app, not the server's.

        `options` maps option names to values: str/int/float/bool, FakeUser/FakeMember, FakeRole,
        FakeChannel, or an attachment from `register_attachment`. `attachments` is a shortcut for
        attachment options: {"selfie": ("me.jpg", data)}. A `FakeMember` implies its guild; a
        `FakeUser` without `guild_id` runs the command in the user's DM with the bot. `permissions`
        overrides the member's computed permission bits.
        """
        values = dict(options or {})
        for option, spec in (attachments or {}).items():
            values[option] = self._attachment(spec)
        plain, guild, member, channel = self._factory.context_for(user, guild_id, channel_id)
        ctx = (Context.GUILD if guild else Context.BOT_DM) if context is None else context
        path = name.split()
        command = self._command(path[0], guild=guild, command_type=CommandType.CHAT_INPUT)
        if command is not None:
            self._factory.check_command_available(
                command, member=member, context=ctx, enforce_permissions=enforce_permissions
            )
        resolved = Resolved(guild)
        data = self._command_data(command, path[0], CommandType.CHAT_INPUT)
        data["options"] = nest_subcommands(path, values, command, resolved, focused=None)
        if resolved.data:
            data["resolved"] = resolved.data
        record = self._factory.build(
            kind="slash_command",
            type=InteractionType.APPLICATION_COMMAND,
            data=data,
            user=plain,
            guild=guild,
            member=member,
            channel=channel,
            permissions=permissions,
            app_permissions=app_permissions,
            locale=locale,
            context=ctx,
            installed_by=installed_by,
        )
        return await self._dispatch(record, f"{plain.username} runs /{name} {sorted(values)}")

    async def send_autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        focused: str,
        user: FakeUser | FakeMember,
        guild_id: int | None = None,
        channel_id: int | None = None,
        locale: str = "en-US",
        installed_by: str = "guild",
    ) -> InteractionRecord:
        """A member types into option `focused` of `/name`; `options[focused]` is the partial text."""
        if focused not in options:
            raise ValueError(f"the focused option {focused!r} needs its partial text in `options`")
        plain, guild, member, channel = self._factory.context_for(user, guild_id, channel_id)
        path = name.split()
        command = self._command(path[0], guild=guild, command_type=CommandType.CHAT_INPUT)
        resolved = Resolved(guild)
        data = self._command_data(command, path[0], CommandType.CHAT_INPUT)
        data["options"] = nest_subcommands(path, options, command, resolved, focused=focused)
        record = self._factory.build(
            kind="autocomplete",
            type=InteractionType.AUTOCOMPLETE,
            data=data,
            user=plain,
            guild=guild,
            member=member,
            channel=channel,
            locale=locale,
            installed_by=installed_by,
        )
        return await self._dispatch(
            record, f"{plain.username} types {options[focused]!r} into /{name} {focused}"
        )

    async def send_user_command(
        self,
        name: str,
        target: FakeUser | FakeMember,
        *,
        user: FakeUser | FakeMember,
        guild_id: int | None = None,
        channel_id: int | None = None,
        permissions: int | None = None,
        locale: str = "en-US",
        enforce_permissions: bool = True,
    ) -> InteractionRecord:
        """A member picks Apps → `name` on `target`'s profile (a user context menu)."""
        plain, guild, member, channel = self._factory.context_for(user, guild_id, channel_id)
        command = self._command(name, guild=guild, command_type=CommandType.USER)
        ctx = Context.GUILD if guild else Context.BOT_DM
        if command is not None:
            self._factory.check_command_available(
                command, member=member, context=ctx, enforce_permissions=enforce_permissions
            )
        resolved = Resolved(guild)
        target_id = resolved.user(target)
        data = self._command_data(command, name, CommandType.USER)
        data.update(target_id=target_id, resolved=resolved.data)
        record = self._factory.build(
            kind="user_command",
            type=InteractionType.APPLICATION_COMMAND,
            data=data,
            user=plain,
            guild=guild,
            member=member,
            channel=channel,
            permissions=permissions,
            locale=locale,
            context=ctx,
        )
        target_name = target.user.username if isinstance(target, FakeMember) else target.username
        return await self._dispatch(record, f"{plain.username} uses {name!r} on {target_name}")

    async def send_component(
        self,
        message: MessageRef,
        custom_id: str,
        *,
        user: FakeUser | FakeMember | None = None,
        values: Sequence[str] | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """A member clicks button `custom_id` (or picks `values` in a select) on a message the bot sent.

        `message` is a BotAction, a StoredMessage, an id, or an InteractionRecord (its latest message
        that shows `custom_id`). The member defaults to whoever ran the interaction that made the message.
        """
        stored = self._resolve_message(message, custom_id)
        component = find_clickable(stored, custom_id)
        component_type = int(component["type"])
        if component_type != 2 and values is None:
            raise ValueError(f"{custom_id!r} is a select menu (type {component_type}); pass values=[...]")
        if user is None:
            if stored.interaction is None:
                raise ValueError("say which user clicks: the message was not made by an interaction")
            user = stored.interaction.user
        plain, guild, member, channel = self._factory.context_for(user, stored.guild_id, stored.channel_id)
        data: JSON = {"custom_id": custom_id, "component_type": component_type}
        if "id" in component:
            data["id"] = component["id"]
        if values is not None:
            data["values"] = list(values)
        record = self._factory.build(
            kind="component",
            type=InteractionType.MESSAGE_COMPONENT,
            data=data,
            user=plain,
            guild=guild,
            member=member,
            channel=channel,
            locale=locale,
            message=stored,
            # Discord gives a click the installs that authorized the interaction that made the message
            # (a button under a reply to a member's own install is a user-install interaction too).
            owners=None if stored.interaction is None else stored.interaction.payload["authorizing_integration_owners"],
        )
        return await self._dispatch(record, f"{plain.username} clicks {custom_id!r} on message {stored.id}")

    async def send_modal_submit(
        self,
        modal_from: BotAction | InteractionRecord,
        values: Mapping[str, str | Sequence[str]],
        *,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """The member fills in and submits the modal the bot opened (callback type 9).

        `values` maps each input's custom_id to its text (or to a list, for selects in labels).
        """
        origin = modal_from if isinstance(modal_from, InteractionRecord) else None
        action = modal_from if isinstance(modal_from, BotAction) else None
        if origin is None:
            origin = next((r for r in self.state.interactions.values() if action in r.actions), None)
        elif action is None:
            action = next((a for a in origin.actions if a.callback_type == CallbackType.MODAL), None)
        if origin is None or action is None or action.callback_type != CallbackType.MODAL:
            raise ValueError("that interaction did not open a modal")
        modal = action.modal
        inputs = [c for c in walk_components(modal["components"]) if c.get("type") in (3, 4, 5, 6, 7, 8)]
        known = {c["custom_id"] for c in inputs}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"the modal has no input(s) {unknown}; it has {sorted(known)}")
        missing = [c["custom_id"] for c in inputs if c.get("required", True) and c["custom_id"] not in values]
        if missing:
            raise ValueError(f"the modal requires input(s) {missing}")

        def submitted(component: JSON) -> JSON:
            out: JSON = {
                "type": component["type"],
                "custom_id": component["custom_id"],
                "id": component.get("id", 0),
            }
            value = values.get(component["custom_id"])
            if component["type"] == 4:
                out["value"] = value or ""
            else:
                out["values"] = [value] if isinstance(value, str) else list(value or [])
            return out

        rows: list[JSON] = []
        for row in modal["components"]:
            if row.get("type") == 1:
                rows.append(
                    {
                        "type": 1,
                        "id": row.get("id", 0),
                        "components": [submitted(c) for c in row.get("components", [])],
                    }
                )
            elif row.get("type") == 18 and isinstance(row.get("component"), dict):
                rows.append({"type": 18, "id": row.get("id", 0), "component": submitted(row["component"])})
        source = self.state.messages.get(origin.source_message_id or 0)
        plain, guild, member, channel = self._factory.context_for(
            origin.user, origin.guild_id, origin.channel_id
        )
        record = self._factory.build(
            kind="modal_submit",
            type=InteractionType.MODAL_SUBMIT,
            data={"custom_id": modal["custom_id"], "components": rows},
            user=plain,
            guild=guild,
            member=member,
            channel=channel,
            locale=locale,
            message=source,
        )
        return await self._dispatch(record, f"{plain.username} submits modal {modal['custom_id']!r}")

    # --- gateway controls -------------------------------------------------------------------

    async def wait_for_connection(self, timeout: float = 10.0) -> None:
        """Until the bot holds a live, identified gateway session."""
        await self.gateway.wait_for_session(timeout)

    async def request_reconnect(self) -> None:
        """Ask the bot to reconnect and RESUME (gateway op 7)."""
        await self.gateway.request_reconnect()

    async def drop_connections(self, code: int = 4000) -> None:
        await self.gateway.drop_connections(code)

    async def drop_gateway(self, *, refuse: bool = True) -> None:
        """A gateway outage: the bot's connections closed with 4000 (resumable) and, with `refuse`,
        its reconnects answered 503 until `allow_gateway()`."""
        await self.gateway.drop(refuse=refuse)

    def allow_gateway(self) -> None:
        """The outage is over: the bot's next reconnect (after its backoff) gets through."""
        self.gateway.refuse_connections(False)

    # --- internals --------------------------------------------------------------------------

    def _attachment(self, spec: AttachmentSpec) -> JSON:
        if isinstance(spec, dict):
            if not is_attachment(spec):
                raise TypeError(f"not an attachment object: {spec!r}")
            return spec
        filename, data, *rest = spec
        return self.register_attachment(data, filename, rest[0] if rest else None)

    def _resolve_message(self, ref: MessageRef, custom_id: str) -> StoredMessage:
        if isinstance(ref, StoredMessage):
            message_id = ref.id
        elif isinstance(ref, BotAction):
            if ref.message_id is None:
                raise ValueError(f"{ref.describe()} left no message to click on")
            message_id = ref.message_id
        elif isinstance(ref, InteractionRecord):
            showing = [
                a.message_id
                for a in reversed(ref.actions)
                if a.message_id is not None and custom_id in self.message(a.message_id).custom_ids
            ]
            if not showing:
                raise ValueError(f"no message of {ref!r} shows a component {custom_id!r}")
            message_id = showing[0]
        else:
            message_id = int(ref)
        stored = self.message(message_id)
        if stored.deleted:
            raise ValueError(f"message {message_id} was deleted")
        return stored

    async def _dispatch(self, record: InteractionRecord, description: str) -> InteractionRecord:
        self.state.log.add("test", description)
        record.created_at = time.monotonic()
        await self.gateway.dispatch("INTERACTION_CREATE", record.payload, guild_id=record.guild_id)
        return record

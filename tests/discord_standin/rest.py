"""The stand-in's REST API (under /api/v10) and CDN (under /cdn).

Requests Discord would refuse are refused here too, with Discord's status and error code, so a
bot bug shows up in the test the way it would show up in production: a second acknowledgement,
an acknowledgement after 3 seconds, an edit before any response, an empty or oversized message.
Routes the stand-in lacks answer 404 and are listed in `state.unknown_routes`.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, web

from .faults import Fault, StreamedAsset
from .limits import choice_problem, component_problem, embed_problem
from .models import snowflake
from .payloads import (
    ATTACHMENT_SIZE_LIMIT,
    channel_payload,
    current_user_payload,
    dumps,
    iso_now,
    member_payload,
    synced_command_payload,
    user_payload,
)
from .records import (
    EPHEMERAL,
    LOADING,
    BotAction,
    CallbackType,
    InteractionRecord,
    RejectedRequest,
    UploadedFile,
)
from .state import EDITABLE_FLAGS, SENDABLE_FLAGS, MessageType, StandInState, StoredMessage

JSON = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API = "/api/v10"
_FILE_FIELD = re.compile(r"^files\[(\d+)\]$")
_COMPONENTS_V2 = 1 << 15
_log = logging.getLogger(__name__)


def json_response(data: Any, status: int = 200) -> web.Response:
    # Exactly `application/json`: discord.py parses nothing else, and aiohttp's json_response
    # appends `; charset=utf-8`.
    return web.Response(
        status=status, body=dumps(data).encode(), headers={"Content-Type": "application/json"}
    )


class DiscordError(Exception):
    """Raised inside a handler to answer with a Discord-style error body."""

    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: JSON = {"message": message, "code": code}
        if errors is not None:
            self.body["errors"] = errors


def unknown_interaction() -> DiscordError:
    return DiscordError(404, 10062, "Unknown interaction")


def unknown_webhook() -> DiscordError:
    return DiscordError(404, 10015, "Unknown Webhook")


def unknown_message() -> DiscordError:
    return DiscordError(404, 10008, "Unknown Message")


def invalid_form(field: str, code: str, message: str) -> DiscordError:
    errors: JSON = {}
    node = errors
    parts = field.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = {"_errors": [{"code": code, "message": message}]}
    return DiscordError(400, 50035, "Invalid Form Body", errors)


async def read_body(request: web.Request) -> tuple[JSON, dict[int, UploadedFile]]:
    """The JSON payload and the uploaded `files[n]` of a JSON or multipart request."""
    if request.content_type.startswith("multipart/"):
        payload: JSON = {}
        files: dict[int, UploadedFile] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "payload_json":
                payload = json.loads(await part.text())
            elif part.name and (match := _FILE_FIELD.match(part.name)):
                index = int(match[1])
                files[index] = UploadedFile(
                    filename=part.filename or f"file{index}",
                    data=bytes(await part.read()),
                    content_type=part.headers.get("Content-Type"),
                )
        return payload, files
    if not request.body_exists:
        return {}, {}
    text = await request.text()
    return (json.loads(text) if text else {}), {}


class RestApi:
    def __init__(
        self,
        state: StandInState,
        *,
        callback_deadline_s: float | None,
        gateway_url: Callable[[], str],
        shard_count: int,
    ) -> None:
        self.state = state
        self.callback_deadline_s = callback_deadline_s
        self.gateway_url = gateway_url
        self.shard_count = shard_count
        self.server_errors: list[str] = []
        self.faults: list[Fault] = []
        self.streams: dict[str, StreamedAsset] = {}

    # --- wiring -----------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.middlewares.append(self._middleware)
        add = app.router.add_route
        add("GET", API + "/gateway", self.get_gateway)
        add("GET", API + "/gateway/bot", self.get_gateway_bot)
        add("GET", API + "/users/@me", self.get_me)
        add("GET", API + "/users/{user_id:\\d+}", self.get_user)
        add("POST", API + "/users/@me/channels", self.create_dm)
        add("GET", API + "/oauth2/applications/@me", self.get_application)
        add("GET", API + "/applications/@me", self.get_application)
        add("GET", API + "/applications/{app_id}/commands", self.get_commands)
        add("PUT", API + "/applications/{app_id}/commands", self.put_commands)
        add("GET", API + "/applications/{app_id}/guilds/{guild_id}/commands", self.get_commands)
        add("PUT", API + "/applications/{app_id}/guilds/{guild_id}/commands", self.put_commands)
        add("GET", API + "/guilds/{guild_id}/members/{user_id}", self.get_member)
        add("POST", API + "/interactions/{interaction_id}/{token}/callback", self.interaction_callback)
        add("POST", API + "/webhooks/{app_id}/{token}", self.create_followup)
        add("GET", API + "/webhooks/{app_id}/{token}/messages/{message_id}", self.get_webhook_message)
        add("PATCH", API + "/webhooks/{app_id}/{token}/messages/{message_id}", self.edit_webhook_message)
        add("DELETE", API + "/webhooks/{app_id}/{token}/messages/{message_id}", self.delete_webhook_message)
        add("POST", API + "/channels/{channel_id}/messages", self.create_channel_message)
        add("GET", API + "/channels/{channel_id}/messages/{message_id}", self.get_channel_message)
        add("PATCH", API + "/channels/{channel_id}/messages/{message_id}", self.edit_channel_message)
        add("DELETE", API + "/channels/{channel_id}/messages/{message_id}", self.delete_channel_message)
        add("GET", "/cdn/{path:.+}", self.cdn)
        add("*", "/{tail:.*}", self.unknown_route)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/gateway"):
            return await handler(request)
        fault = next((f for f in self.faults if f.matches(request)), None)
        if fault is not None and fault.applied:
            done = await handler(request)
            self.state.log.add("fault", f"{request.method} {self._loggable(request.path)} applied, "
                               f"answer lost ({done.status} -> {fault.status or 'dropped'})")
            if fault.status == 0:
                fault.hits += 1
                assert request.transport is not None
                request.transport.abort()
                return done
            return fault.response()
        if fault is not None:
            await request.read()  # drain the body, as a real server would before answering
            response = fault.response()
            self.state.log.add("fault", f"{request.method} {self._loggable(request.path)} -> {response.status}")
            return response
        try:
            response = await handler(request)
        except DiscordError as error:
            response = json_response(error.body, error.status)
            self._note_rejection(request, error)
        except web.HTTPException:
            raise
        except Exception as exc:
            # A stand-in bug must fail the test, not look like a Discord outage the bot retries.
            _log.exception("stand-in handler failed for %s %s", request.method, request.path)
            self.server_errors.append(f"{request.method} {request.path}: {exc!r}")
            response = json_response({"message": f"stand-in error: {exc!r}", "code": 0}, 500)
        self.state.log.add("rest", f"{request.method} {self._loggable(request.path)} -> {response.status}")
        return response

    def _loggable(self, path: str) -> str:
        # Interaction tokens are long; the log stays readable with a prefix.
        return re.sub(r"(aW50ZXJhY3Rpb246\w{6})[\w-]+", r"\1…", path)

    def _note_rejection(self, request: web.Request, error: DiscordError) -> None:
        token = request.match_info.get("token")
        record = self.state.interactions_by_token.get(token) if token else None
        if record is not None:
            record._reject(
                RejectedRequest(request.method, self._loggable(request.path), error.status, error.body)
            )

    def _require_bot(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {self.state.token}":
            raise DiscordError(401, 0, "401: Unauthorized")

    def _require_app(self, request: web.Request) -> None:
        if request.match_info.get("app_id") != str(self.state.application_id):
            raise DiscordError(403, 50001, "Missing Access")

    # --- session and identity ---------------------------------------------------------------

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.gateway_url()})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        return json_response(
            {
                "url": self.gateway_url(),
                "shards": self.shard_count,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def get_me(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        return json_response(current_user_payload(self.state.bot_user))

    async def get_user(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        user = self.state.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return json_response(user_payload(user))

    async def create_dm(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        body, _ = await read_body(request)
        user = self.state.users.get(int(body.get("recipient_id", 0)))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return json_response(channel_payload(self.state.dm_channel(user)))

    async def get_application(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        return json_response(self.state.application())

    async def get_member(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        guild = self.state.guilds.get(int(request.match_info["guild_id"]))
        if guild is None:
            raise DiscordError(404, 10004, "Unknown Guild")
        member = guild.members.get(int(request.match_info["user_id"]))
        if member is None:
            raise DiscordError(404, 10007, "Unknown Member")
        return json_response(member_payload(member))

    # --- commands ---------------------------------------------------------------------------

    def _scope(self, request: web.Request) -> int | None:
        guild_id = request.match_info.get("guild_id")
        if guild_id is None:
            return None
        if int(guild_id) not in self.state.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        return int(guild_id)

    async def get_commands(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        self._require_app(request)
        return json_response(self.state.commands.get(self._scope(request), []))

    async def put_commands(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        self._require_app(request)
        scope = self._scope(request)
        body, _ = await read_body(request)
        if not isinstance(body, list):
            raise invalid_form("_", "LIST_TYPE_CONVERT", "Must be an array")
        names = [(c.get("type", 1), c.get("name")) for c in body]
        if len(names) != len(set(names)):
            raise invalid_form(
                "_", "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique"
            )
        # Discord keeps a command's id across syncs as long as its name and type stay.
        previous = {(c.get("type", 1), c["name"]): int(c["id"]) for c in self.state.commands.get(scope, [])}
        synced = []
        for command in body:
            command_id = previous.get((command.get("type", 1), command["name"])) or snowflake()
            answer = synced_command_payload(
                command, command_id=command_id, app_id=self.state.application_id, guild_id=scope
            )
            if answer.get("default_member_permissions") is not None:
                answer["default_member_permissions"] = str(answer["default_member_permissions"])
            synced.append(answer)
        self.state.commands[scope] = synced
        self.state.command_syncs.append((scope, copy.deepcopy(body)))
        where = "global" if scope is None else f"guild {scope}"
        self.state.log.add(
            "commands", f"synced {len(synced)} {where} command(s): {[c['name'] for c in synced]}"
        )
        return json_response(synced)

    # --- messages ---------------------------------------------------------------------------

    def _validate(self, data: JSON, files: dict[int, UploadedFile]) -> None:
        content = data.get("content")
        if content is not None and len(str(content)) > 2000:
            raise invalid_form("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        if len(data.get("embeds") or []) > 10:
            raise invalid_form("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        if len(files) > 10:
            raise invalid_form("files", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        for upload in files.values():
            if upload.size > ATTACHMENT_SIZE_LIMIT:
                raise DiscordError(413, 40005, "Request entity too large")
        flags = int(data.get("flags") or 0)
        components = data.get("components") or []
        if flags & _COMPONENTS_V2:
            if data.get("content") or data.get("embeds"):
                raise invalid_form(
                    "content",
                    "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                    "The 'content' and 'embeds' fields cannot be used with components v2",
                )
        elif len(components) > 5 or any(c.get("type") != 1 for c in components):
            raise invalid_form("components", "BASE_TYPE_MAX_LENGTH", "Up to 5 action rows are allowed")
        if (problem := component_problem(components) or embed_problem(data.get("embeds") or [])) is not None:
            raise invalid_form(*problem)

    def _apply(
        self, message: StoredMessage, data: JSON, files: dict[int, UploadedFile], *, creating: bool
    ) -> list[UploadedFile]:
        """Merge a create or edit body into `message` the way Discord does; returns the new uploads.

        Nothing changes unless the whole body is acceptable.
        """
        self._validate(data, files)
        content = (data["content"] or "") if "content" in data else message.content
        embeds = list(data["embeds"] or []) if "embeds" in data else list(message.embeds)
        components = list(data["components"] or []) if "components" in data else list(message.components)
        flags = message.flags & ~LOADING
        if data.get("flags") is not None:
            allowed = SENDABLE_FLAGS if creating else EDITABLE_FLAGS
            flags = (flags & ~allowed) | (int(data["flags"]) & allowed)
        ephemeral = bool(flags & EPHEMERAL)
        pending = dict(files)
        attachments: list[JSON] = list(message.attachments)
        new_uploads: list[tuple[int, JSON]] = []
        if "attachments" in data:
            attachments = []
            for position, entry in enumerate(data["attachments"] or []):
                key = int(entry["id"])
                if key in pending:
                    new_uploads.append((key, entry))
                    attachments.append({"upload": key})
                    continue
                existing = next((a for a in message.attachments if int(a["id"]) == key), None)
                if existing is None:
                    raise invalid_form(
                        f"attachments.{position}.id", "ATTACHMENT_NOT_FOUND", "Unknown attachment"
                    )
                attachments.append(existing)
        # Uploads the `attachments` list does not name (or every upload, without a list) are appended.
        named = {key for key, _ in new_uploads}
        for index in sorted(pending):
            if index not in named:
                new_uploads.append((index, {}))
                attachments.append({"upload": index})
        if not (content or embeds or attachments or components):
            raise DiscordError(400, 50006, "Cannot send an empty message")

        uploaded: dict[int, tuple[JSON, UploadedFile]] = {
            index: self.state.attach_upload(
                pending[index],
                filename=entry.get("filename"),
                description=entry.get("description"),
                ephemeral=ephemeral,
            )
            for index, entry in new_uploads
        }
        message.content = content
        message.embeds = embeds
        message.components = components
        message.flags = flags
        kept = [uploaded[a["upload"]][0] if "upload" in a else a for a in attachments]
        # Discord deletes the files of attachments an edit leaves out; their CDN URLs stop working.
        kept_ids = {a["id"] for a in kept}
        for dropped in message.attachments:
            if dropped["id"] not in kept_ids:
                self.state.drop_cdn_url(dropped.get("url", ""))
        message.attachments = kept
        if not creating:
            message.edited_timestamp = iso_now()
        return [uploaded[index][1] for index, _ in new_uploads]

    def _new_message(
        self, record: InteractionRecord | None, channel_id: int, guild_id: int | None
    ) -> StoredMessage:
        message_type = MessageType.DEFAULT
        if record is not None and record.kind == "slash_command":
            message_type = MessageType.CHAT_INPUT_COMMAND
        elif record is not None and record.kind in ("user_command", "message_command"):
            message_type = MessageType.CONTEXT_MENU_COMMAND
        message = StoredMessage(
            id=snowflake(),
            channel_id=channel_id,
            guild_id=guild_id,
            author=self.state.bot_user,
            type=message_type,
            interaction=record,
            webhook_id=self.state.application_id if record is not None else None,
            application_id=self.state.application_id if record is not None else None,
        )
        return message

    def _commit_new(self, message: StoredMessage, record: InteractionRecord | None) -> None:
        self.state.messages[message.id] = message
        if record is not None:
            record.message_ids.append(message.id)

    # --- interaction callback ---------------------------------------------------------------

    async def interaction_callback(self, request: web.Request) -> web.Response:
        record = self.state.interactions.get(int(request.match_info["interaction_id"]))
        if record is None or record.token != request.match_info["token"]:
            raise unknown_interaction()
        body, files = await read_body(request)
        if record.acknowledged:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        elapsed = time.monotonic() - record.created_at
        if self.callback_deadline_s is not None and elapsed > self.callback_deadline_s:
            # Discord forgets an interaction nobody acknowledged within 3 seconds.
            self.state.log.add("deadline", f"callback for {record!r} came after {elapsed:.2f}s")
            raise unknown_interaction()
        callback_type = int(body.get("type", 0))
        data: JSON = body.get("data") or {}
        self._check_callback_type(record, callback_type)

        message: StoredMessage | None = None
        uploaded: list[UploadedFile] = []
        if callback_type == CallbackType.CHANNEL_MESSAGE:
            message = self._new_message(record, record.channel_id, record.guild_id)
            uploaded = self._apply(message, data, files, creating=True)
            self._commit_new(message, record)
            record.original_message_id = message.id
        elif callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE:
            message = self._new_message(record, record.channel_id, record.guild_id)
            message.flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            self._commit_new(message, record)
            record.original_message_id = message.id
        elif callback_type in (CallbackType.DEFERRED_UPDATE_MESSAGE, CallbackType.UPDATE_MESSAGE):
            source = self.state.messages.get(record.source_message_id or 0)
            if source is None or source.deleted:
                raise unknown_message()
            if callback_type == CallbackType.UPDATE_MESSAGE:
                uploaded = self._apply(source, data, files, creating=False)
                message = source
            record.original_message_id = source.id
            record.message_ids.append(source.id)
        elif callback_type == CallbackType.AUTOCOMPLETE_RESULT:
            choices = data.get("choices") or []
            if len(choices) > 25:
                raise invalid_form("data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            if (problem := choice_problem(choices)) is not None:
                raise invalid_form(*problem)
        elif callback_type == CallbackType.MODAL:
            if not data.get("custom_id") or not data.get("title") or not data.get("components"):
                raise invalid_form("data", "MODAL_INVALID", "A modal needs custom_id, title and components")

        record.callback_type = callback_type
        snapshot = None if message is None else message.payload()
        record._add(BotAction("callback", body, uploaded, callback_type, message and message.id, snapshot))
        self.state.log.add("callback", f"type {callback_type} for {record!r}")

        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        interaction: JSON = {
            "id": str(record.id),
            "type": record.type,
            "response_message_loading": callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE,
            "response_message_ephemeral": bool(message and message.ephemeral),
        }
        if record.original_message_id is not None and callback_type in (4, 5, 7):
            interaction["response_message_id"] = str(record.original_message_id)
        resource: JSON = {"type": callback_type}
        if snapshot is not None:
            resource["message"] = snapshot
        return json_response({"interaction": interaction, "resource": resource})

    def _check_callback_type(self, record: InteractionRecord, callback_type: int) -> None:
        allowed = {
            "slash_command": {4, 5, 9},
            "user_command": {4, 5, 9},
            "message_command": {4, 5, 9},
            "component": {4, 5, 6, 7, 9},
            "modal_submit": {4, 5, 6, 7},
            "autocomplete": {8},
        }[record.kind]
        if record.kind == "modal_submit" and record.source_message_id is None:
            allowed = {4, 5}
        if callback_type not in allowed:
            raise invalid_form(
                "type",
                "INTERACTION_CALLBACK_TYPE_INVALID",
                f"Callback type {callback_type} is not valid for a {record.kind} interaction "
                f"(allowed {sorted(allowed)})",
            )

    # --- interaction webhooks ---------------------------------------------------------------

    def _record_for_webhook(self, request: web.Request) -> InteractionRecord:
        if request.match_info["app_id"] != str(self.state.application_id):
            raise unknown_webhook()
        record = self.state.interactions_by_token.get(request.match_info["token"])
        if record is None:
            raise unknown_webhook()
        return record

    def _webhook_message(self, record: InteractionRecord, ref: str) -> StoredMessage:
        if ref == "@original":
            message_id = record.original_message_id
        else:
            message_id = int(ref) if ref.isdigit() else None
            if message_id not in record.message_ids:
                message_id = None
        message = self.state.messages.get(message_id or 0)
        if message is None or message.deleted:
            raise unknown_message()
        return message

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        record = self._record_for_webhook(request)
        return json_response(self._webhook_message(record, request.match_info["message_id"]).payload())

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        record = self._record_for_webhook(request)
        ref = request.match_info["message_id"]
        message = self._webhook_message(record, ref)
        body, files = await read_body(request)
        uploaded = self._apply(message, body, files, creating=False)
        is_original = ref == "@original" or message.id == record.original_message_id
        kind = "edit_original" if is_original else "edit_message"
        record._add(BotAction(kind, body, uploaded, None, message.id, message.payload()))
        return json_response(message.payload())

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        record = self._record_for_webhook(request)
        message = self._webhook_message(record, request.match_info["message_id"])
        message.deleted = True
        record._add(BotAction("delete_message", {}, [], None, message.id, None))
        return web.Response(status=204)

    async def create_followup(self, request: web.Request) -> web.Response:
        record = self._record_for_webhook(request)
        if not record.acknowledged or record.kind == "autocomplete":
            # The follow-up webhook exists only once the interaction has been answered.
            raise unknown_webhook()
        body, files = await read_body(request)
        original = self.state.messages.get(record.original_message_id or 0)
        if original is not None and original.loading and not original.deleted:
            # The first follow-up after a deferral replaces the "thinking" message and keeps the
            # deferral's visibility, whatever flags it asks for.
            body_flags = {
                **body,
                "flags": (int(body.get("flags") or 0) & ~EPHEMERAL) | (original.flags & EPHEMERAL),
            }
            uploaded = self._apply(original, body_flags, files, creating=True)
            message = original
        else:
            message = self._new_message(record, record.channel_id, record.guild_id)
            uploaded = self._apply(message, body, files, creating=True)
            self._commit_new(message, record)
        record._add(BotAction("followup", body, uploaded, None, message.id, message.payload()))
        if request.query.get("wait", "").lower() in ("1", "true"):
            return json_response(message.payload())
        return web.Response(status=204)

    # --- channel messages (bot token) -------------------------------------------------------

    def _channel_message(self, request: web.Request) -> StoredMessage:
        message = self.state.messages.get(int(request.match_info["message_id"]))
        channel_id = int(request.match_info["channel_id"])
        # Ephemeral messages exist only for their interaction's webhook, never for the channel API.
        if message is None or message.deleted or message.channel_id != channel_id or message.ephemeral:
            raise unknown_message()
        return message

    async def create_channel_message(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        channel = self.state.channel(int(request.match_info["channel_id"]))
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        body, files = await read_body(request)
        body = {**body, "flags": int(body.get("flags") or 0) & ~EPHEMERAL}
        message = self._new_message(None, channel.id, channel.guild_id)
        self._apply(message, body, files, creating=True)
        self._commit_new(message, None)
        self.state.channel_messages.append(message)
        return json_response(message.payload())

    async def get_channel_message(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        return json_response(self._channel_message(request).payload())

    async def edit_channel_message(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        message = self._channel_message(request)
        body, files = await read_body(request)
        uploaded = self._apply(message, body, files, creating=False)
        if message.interaction is not None:
            message.interaction._add(
                BotAction("edit_message", body, uploaded, None, message.id, message.payload())
            )
        return json_response(message.payload())

    async def delete_channel_message(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        message = self._channel_message(request)
        message.deleted = True
        if message.interaction is not None:
            message.interaction._add(BotAction("delete_message", {}, [], None, message.id, None))
        return web.Response(status=204)

    # --- CDN and the rest -------------------------------------------------------------------

    async def cdn(self, request: web.Request) -> web.StreamResponse:
        stream = self.streams.get(request.match_info["path"])
        if stream is not None:
            return await stream.serve(request)
        asset = self.state.cdn_lookup(request.match_info["path"])
        if asset is None:
            self.state.log.add("cdn", f"miss {request.match_info['path']}")
            return web.Response(status=404, text="Not Found")
        return web.Response(body=asset.data, headers={"Content-Type": asset.content_type})

    async def unknown_route(self, request: web.Request) -> web.Response:
        self.state.unknown_routes.append((request.method, self._loggable(request.path)))
        self.state.log.add("unknown_route", f"{request.method} {self._loggable(request.path)}")
        return json_response({"message": "404: Not Found", "code": 0}, 404)

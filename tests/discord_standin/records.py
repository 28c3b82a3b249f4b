"""What the stand-in saw: one record per interaction, holding everything the bot did for it in
order, and one event log for the whole run.

A test waits on a record (`await record.wait_for_final_file()`) instead of sleeping; a wait that
times out says what did arrive, which is usually enough to see why the expected thing did not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .models import FakeUser

JSON = dict[str, Any]

EPHEMERAL = 1 << 6
LOADING = 1 << 7

ActionKind = Literal[
    "callback",  # POST /interactions/{id}/{token}/callback
    "edit_original",  # PATCH /webhooks/{app}/{token}/messages/@original
    "edit_message",  # PATCH /webhooks/{app}/{token}/messages/{id} or /channels/{c}/messages/{id}
    "followup",  # POST /webhooks/{app}/{token}
    "delete_message",  # DELETE .../messages/@original or /{id}
]

InteractionKind = Literal[
    "slash_command", "user_command", "message_command", "component", "autocomplete", "modal_submit"
]


class CallbackType:
    PONG = 1
    CHANNEL_MESSAGE = 4
    DEFERRED_CHANNEL_MESSAGE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    AUTOCOMPLETE_RESULT = 8
    MODAL = 9


@dataclass(frozen=True)
class UploadedFile:
    """A file the bot uploaded (multipart `files[n]`), with the attachment it became."""

    filename: str
    data: bytes
    content_type: str | None
    attachment_id: int | None = None
    url: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)


def walk_components(components: list[JSON]) -> Iterator[JSON]:
    """Every component, nested ones included (action rows, v2 containers, sections, labels)."""
    for component in components:
        yield component
        yield from walk_components(component.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(component.get(key), dict):
                yield from walk_components([component[key]])


@dataclass
class BotAction:
    """One thing the bot did for an interaction.

    `message` is the whole message as it stood right after this action (None for actions that
    leave no message: deferred update, autocomplete, modal, delete); `payload` is what the bot sent.
    """

    kind: ActionKind
    payload: JSON
    files: list[UploadedFile] = field(default_factory=list)
    callback_type: int | None = None
    message_id: int | None = None
    message: JSON | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def data(self) -> JSON:
        """The message/response body: `payload['data']` for callbacks, the payload otherwise."""
        if self.kind == "callback":
            return self.payload.get("data") or {}
        return self.payload

    @property
    def content(self) -> str | None:
        return None if self.message is None else self.message.get("content")

    @property
    def flags(self) -> int:
        return 0 if self.message is None else int(self.message.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        if self.message is None:
            return bool(int(self.data.get("flags") or 0) & EPHEMERAL)
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    @property
    def embeds(self) -> list[JSON]:
        return [] if self.message is None else list(self.message.get("embeds") or [])

    @property
    def components(self) -> list[JSON]:
        return [] if self.message is None else list(self.message.get("components") or [])

    @property
    def attachments(self) -> list[JSON]:
        return [] if self.message is None else list(self.message.get("attachments") or [])

    @property
    def buttons(self) -> list[JSON]:
        return [c for c in walk_components(self.components) if c.get("type") == 2]

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in walk_components(self.components) if "custom_id" in c]

    @property
    def has_files(self) -> bool:
        return bool(self.files)

    @property
    def file(self) -> UploadedFile:
        if not self.files:
            raise LookupError(f"{self.describe()} carries no file")
        return self.files[0]

    @property
    def choices(self) -> list[JSON]:
        """Autocomplete choices (callback type 8)."""
        return list(self.data.get("choices") or [])

    @property
    def modal(self) -> JSON:
        """The modal the bot opened (callback type 9)."""
        return self.data

    def describe(self) -> str:
        what = self.kind if self.callback_type is None else f"callback type {self.callback_type}"
        bits = [what]
        if self.message_id is not None:
            bits.append(f"message {self.message_id}")
        if self.content:
            bits.append(f"content={self.content[:80]!r}")
        if self.files:
            bits.append("files=" + ",".join(f"{f.filename}({f.size}B)" for f in self.files))
        if self.custom_ids:
            bits.append(f"custom_ids={self.custom_ids}")
        if self.ephemeral:
            bits.append("ephemeral")
        if self.loading:
            bits.append("loading")
        return " ".join(bits)


@dataclass(frozen=True)
class RejectedRequest:
    """A request about this interaction that the stand-in answered with an error, as Discord would."""

    method: str
    path: str
    status: int
    error: JSON


@dataclass
class LogEntry:
    at: float
    kind: str
    text: str
    data: JSON = field(default_factory=dict)


class EventLog:
    """Everything that crossed the stand-in, in order: REST calls, gateway frames, test actions."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []
        self._t0 = time.monotonic()

    def add(self, kind: str, text: str, **data: Any) -> LogEntry:
        entry = LogEntry(time.monotonic(), kind, text, data)
        self.entries.append(entry)
        return entry

    def of_kind(self, prefix: str) -> list[LogEntry]:
        return [e for e in self.entries if e.kind.startswith(prefix)]

    def tail(self, n: int = 20) -> str:
        return "\n".join(f"  +{e.at - self._t0:7.3f}s {e.kind:<14} {e.text}" for e in self.entries[-n:])


class InteractionRecord:
    """One INTERACTION_CREATE the test sent, and everything the bot did about it."""

    def __init__(
        self,
        *,
        kind: InteractionKind,
        payload: JSON,
        user: FakeUser,
        log: EventLog,
        source_message_id: int | None = None,
    ) -> None:
        self.kind: InteractionKind = kind
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.user = user
        self.guild_id: int | None = int(payload["guild_id"]) if "guild_id" in payload else None
        self.channel_id: int = int(payload["channel_id"])
        self.source_message_id = source_message_id
        self.created_at = time.monotonic()
        self.actions: list[BotAction] = []
        self.rejected: list[RejectedRequest] = []
        self.callback_type: int | None = None
        self.original_message_id: int | None = None
        self.message_ids: list[int] = []
        self._log = log
        self._waiters: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        name = (self.payload.get("data") or {}).get("name") or (self.payload.get("data") or {}).get(
            "custom_id"
        )
        return f"<InteractionRecord {self.kind} {name!r} id={self.id} actions={len(self.actions)}>"

    @property
    def data(self) -> JSON:
        return self.payload.get("data") or {}

    @property
    def acknowledged(self) -> bool:
        return self.callback_type is not None

    @property
    def callback(self) -> BotAction | None:
        return next((a for a in self.actions if a.kind == "callback"), None)

    @property
    def followups(self) -> list[BotAction]:
        return [a for a in self.actions if a.kind == "followup"]

    @property
    def files(self) -> list[UploadedFile]:
        return [f for a in self.actions for f in a.files]

    @property
    def last_message(self) -> BotAction | None:
        """The latest action that left a message behind."""
        return next((a for a in reversed(self.actions) if a.message is not None), None)

    def _add(self, action: BotAction) -> None:
        self.actions.append(action)
        self._wake()

    def _reject(self, rejected: RejectedRequest) -> None:
        self.rejected.append(rejected)
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for(
        self,
        predicate: Callable[[BotAction], bool],
        *,
        timeout: float = 10.0,
        what: str = "a matching action",
    ) -> BotAction:
        """The first action, past or future, that satisfies `predicate`."""
        seen = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while seen < len(self.actions):
                action = self.actions[seen]
                seen += 1
                if predicate(action):
                    return action
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(self._timeout_report(what, timeout))
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                raise TimeoutError(self._timeout_report(what, timeout)) from None

    async def wait_for_callback(self, *, timeout: float = 5.0) -> BotAction:
        return await self.wait_for(
            lambda a: a.kind == "callback", timeout=timeout, what="the interaction callback"
        )

    async def wait_for_message(
        self, predicate: Callable[[BotAction], bool] = lambda a: True, *, timeout: float = 10.0
    ) -> BotAction:
        """The first action that leaves a non-loading message (a reply, edit or follow-up)."""
        return await self.wait_for(
            lambda a: a.message is not None and not a.loading and predicate(a),
            timeout=timeout,
            what="a message",
        )

    async def wait_for_content(self, text: str, *, timeout: float = 10.0) -> BotAction:
        """The first message whose content contains `text`."""
        return await self.wait_for(
            lambda a: a.message is not None and text in (a.content or ""),
            timeout=timeout,
            what=f"content {text!r}",
        )

    async def wait_for_file(self, *, timeout: float = 30.0) -> BotAction:
        """The first action that uploads a file (a preview counts)."""
        return await self.wait_for(lambda a: a.has_files, timeout=timeout, what="a file upload")

    async def wait_for_final_file(
        self, *, timeout: float = 60.0, final: Callable[[BotAction], bool] | None = None
    ) -> BotAction:
        """The upload that finishes the job.

        Previews are uploads too, so "final" needs a marker: by default the upload whose message
        also carries components (the result's buttons), which previews do not. Pass `final` to
        choose another marker.
        """
        is_final = final or (lambda a: bool(a.components))
        return await self.wait_for(
            lambda a: a.has_files and is_final(a), timeout=timeout, what="the final file upload"
        )

    async def wait_for_choices(self, *, timeout: float = 5.0) -> list[JSON]:
        """Autocomplete choices the bot answered with."""
        action = await self.wait_for(
            lambda a: a.callback_type == CallbackType.AUTOCOMPLETE_RESULT,
            timeout=timeout,
            what="autocomplete result",
        )
        return action.choices

    def _timeout_report(self, what: str, timeout: float) -> str:
        lines = [f"{what} did not arrive within {timeout}s for {self!r}."]
        lines.append("Bot actions so far:" if self.actions else "The bot did nothing for this interaction.")
        lines += [f"  {a.describe()}" for a in self.actions]
        if self.rejected:
            lines.append("Requests the stand-in rejected:")
            lines += [f"  {r.method} {r.path} -> {r.status} {r.error}" for r in self.rejected]
        lines.append("Stand-in log (latest last):")
        lines.append(self._log.tail(25))
        return "\n".join(lines)

"""The stand-in's gateway websocket: HELLO, heartbeats, IDENTIFY/READY/GUILD_CREATE, RESUME, dispatch.

Frames go out as plain JSON text even though discord.py asks for `compress=zlib-stream`: it decodes
text frames as they are. A session outlives its socket so that RESUME can replay what a dropped
connection missed, as Discord does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .payloads import API_VERSION, dumps, guild_create_payload, member_payload, user_payload
from .state import StandInState

JSON = dict[str, Any]

GUILD_MEMBERS_INTENT = 1 << 1
REPLAY_FRAMES = 1000  # dispatches a RESUME can replay


class Op:
    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


class CloseCode:
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    INVALID_SHARD = 4010


@dataclass
class GatewaySession:
    session_id: str
    shard: tuple[int, int]
    intents: int
    identify: JSON
    seq: int = 0
    # What a RESUME replays. Discord keeps a bounded backlog too; a client that fell further
    # behind is told to IDENTIFY afresh. Bounded, so a long soak measures the bot, not this buffer.
    sent: deque[JSON] = field(default_factory=lambda: deque(maxlen=REPLAY_FRAMES))
    ws: web.WebSocketResponse | None = None
    resumes: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def live(self) -> bool:
        return self.ws is not None and not self.ws.closed


class Gateway:
    def __init__(
        self,
        state: StandInState,
        *,
        heartbeat_interval_ms: int,
        resume_gateway_url: str | None,
        own_url: Callable[[], str],
    ) -> None:
        self.state = state
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._resume_gateway_url = resume_gateway_url
        self._own_url = own_url
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: list[JSON] = []  # the query of every connection, for tests of the client's URL
        self._sockets: set[web.WebSocketResponse] = set()
        self._changed = asyncio.Event()
        # While set, a connection attempt is answered 503 before the upgrade, as Discord's gateway
        # does in an outage: the client's reconnect fails and it backs off and tries again.
        self.refusing = False
        self.refused = 0

    @property
    def resume_gateway_url(self) -> str:
        return self._resume_gateway_url or self._own_url()

    # --- test controls ----------------------------------------------------------------------

    def live_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if s.live]

    async def wait_for_session(self, timeout: float) -> GatewaySession:
        async with asyncio.timeout(timeout):
            while not (live := self.live_sessions()):
                self._changed.clear()
                await self._changed.wait()
        return live[0]

    def session_for(self, guild_id: int | None) -> GatewaySession:
        """The session of the shard that owns `guild_id`. A disconnected session still takes events:
        Discord keeps them for a RESUME to replay."""
        if not self.sessions:
            raise RuntimeError(
                "the bot never identified on the gateway: did it start and log in?\n"
                + self.state.log.tail(15)
            )
        # Live sessions first, then the newest: an old session replaced by a fresh IDENTIFY gets nothing.
        for session in sorted(reversed(list(self.sessions.values())), key=lambda s: not s.live):
            shard_id, shard_count = session.shard
            # Discord's sharding formula; DMs always go to shard 0.
            wanted = 0 if guild_id is None else (guild_id >> 22) % shard_count
            if shard_id == wanted:
                return session
        raise RuntimeError(f"no session for the shard of guild {guild_id}")

    async def dispatch(self, event: str, data: JSON, *, guild_id: int | None = None) -> None:
        await self.send_dispatch(self.session_for(guild_id), event, data)

    async def request_reconnect(self) -> None:
        """Op 7: Discord asks the client to reconnect and resume (it does this on deploys)."""
        for session in self.live_sessions():
            await self._send(session.ws, {"op": Op.RECONNECT, "d": None})

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every socket with `code` without ending the sessions, as a network fault would."""
        for ws in list(self._sockets):
            await ws.close(code=code, message=b"stand-in dropped the connection")

    async def drop(self, *, refuse: bool) -> None:
        """An outage: every socket closed with 4000 (a code discord.py resumes after), and with
        `refuse` every reconnect refused until `refuse_connections(False)`."""
        self.refuse_connections(refuse)
        await self.drop_connections(4000)

    def refuse_connections(self, refuse: bool) -> None:
        self.refusing = refuse
        self.state.log.add("gateway", "refusing connections" if refuse else "accepting connections")

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"stand-in shutting down")

    # --- protocol ---------------------------------------------------------------------------

    async def _send(self, ws: web.WebSocketResponse | None, frame: JSON) -> None:
        if ws is None or ws.closed:
            return
        with contextlib.suppress(ConnectionResetError):
            await ws.send_str(dumps(frame))
        if frame["op"] != Op.HEARTBEAT_ACK:
            name = frame.get("t") or f"op {frame['op']}"
            self.state.log.add("gateway.send", f"{name} s={frame.get('s')}")

    async def send_dispatch(self, session: GatewaySession, event: str, data: JSON) -> None:
        # Numbering and sending under one lock keeps sequence numbers in wire order.
        async with session.lock:
            session.seq += 1
            frame = {"op": Op.DISPATCH, "t": event, "s": session.seq, "d": data}
            session.sent.append(frame)
            await self._send(session.ws, frame)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.refusing:
            self.refused += 1
            self.state.log.add("gateway", f"refused {request.path_qs} (503)")
            self._changed.set()
            return web.Response(status=503, text="stand-in gateway unavailable")
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.connections.append(dict(request.query))
        self.state.log.add("gateway", f"connect {request.path_qs}")
        session: GatewaySession | None = None
        try:
            await self._send(ws, {"op": Op.HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    if message.type == WSMsgType.BINARY:
                        await ws.close(code=CloseCode.DECODE_ERROR, message=b"binary frames are not expected")
                    continue
                try:
                    frame = json.loads(message.data)
                except ValueError:
                    await ws.close(code=CloseCode.DECODE_ERROR, message=b"invalid JSON")
                    break
                session = await self._on_frame(ws, frame, session)
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
            self.state.log.add("gateway", f"disconnect code={ws.close_code}")
            self._changed.set()
        return ws

    async def _on_frame(
        self, ws: web.WebSocketResponse, frame: JSON, session: GatewaySession | None
    ) -> GatewaySession | None:
        op = frame.get("op")
        data = frame.get("d")
        if op == Op.HEARTBEAT:
            await self._send(ws, {"op": Op.HEARTBEAT_ACK, "d": None})
            return session
        self.state.log.add("gateway.recv", f"op {op}")
        if op == Op.IDENTIFY:
            if session is not None:
                await ws.close(code=4005, message=b"Already authenticated")
                return session
            return await self._identify(ws, data or {})
        if op == Op.RESUME:
            return await self._resume(ws, data or {})
        if session is None:
            await ws.close(code=CloseCode.NOT_AUTHENTICATED, message=b"Not authenticated")
            return None
        if op == Op.REQUEST_GUILD_MEMBERS:
            await self._members_chunk(session, data or {})
        elif op not in (Op.PRESENCE_UPDATE, Op.VOICE_STATE_UPDATE):
            await ws.close(code=CloseCode.UNKNOWN_OPCODE, message=b"Unknown opcode")
        return session

    async def _identify(self, ws: web.WebSocketResponse, data: JSON) -> GatewaySession | None:
        if data.get("token") != self.state.token:
            await ws.close(code=CloseCode.AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return None
        shard_id, shard_count = data.get("shard") or (0, 1)
        if not 0 <= shard_id < shard_count:
            await ws.close(code=CloseCode.INVALID_SHARD, message=b"Invalid shard.")
            return None
        session = GatewaySession(
            session_id=secrets.token_hex(16),
            shard=(shard_id, shard_count),
            intents=int(data.get("intents", 0)),
            identify=data,
            ws=ws,
        )
        self.sessions[session.session_id] = session
        guilds = [g for g in self.state.guilds.values() if (g.id >> 22) % shard_count == shard_id]
        ready: JSON = {
            "v": API_VERSION,
            "user": user_payload(self.state.bot_user),
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.state.application_id), "flags": self.state.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "geo_ordered_rtc_regions": [],
            "auth": {},
            "user_settings": {},
            "_trace": ["stand-in"],
        }
        if data.get("shard") is not None:
            ready["shard"] = [shard_id, shard_count]
        await self.send_dispatch(session, "READY", ready)
        all_members = bool(session.intents & GUILD_MEMBERS_INTENT)
        for guild in guilds:
            await self.send_dispatch(
                session, "GUILD_CREATE", guild_create_payload(guild, include_all_members=all_members)
            )
        self._changed.set()
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: JSON) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") != self.state.token:
            # `d: false`: not resumable, the client must IDENTIFY afresh.
            await self._send(ws, {"op": Op.INVALID_SESSION, "d": False})
            return None
        seq = int(data.get("seq") or 0)
        if session.sent and session.sent[0]["s"] > seq + 1:
            # The frames after `seq` are no longer kept: not resumable.
            await self._send(ws, {"op": Op.INVALID_SESSION, "d": False})
            return None
        stale = session.ws
        if stale is not None and stale is not ws and not stale.closed:
            # A resume takes the session over; Discord drops the connection it had.
            await stale.close(code=4000, message=b"session resumed elsewhere")
        async with session.lock:
            session.ws = ws
            session.resumes += 1
            for frame in session.sent:
                if frame["s"] > seq:
                    await self._send(ws, frame)
            session.seq += 1
            resumed = {"op": Op.DISPATCH, "t": "RESUMED", "s": session.seq, "d": {"_trace": ["stand-in"]}}
            session.sent.append(resumed)
            await self._send(ws, resumed)
        self._changed.set()
        return session

    async def _members_chunk(self, session: GatewaySession, data: JSON) -> None:
        guild = self.state.guilds.get(int(data.get("guild_id") or 0))
        if guild is None:
            return
        members = list(guild.members.values())
        wanted = data.get("user_ids")
        if wanted:
            wanted_ids = {int(u) for u in (wanted if isinstance(wanted, list) else [wanted])}
            members = [m for m in members if m.id in wanted_ids]
        elif data.get("query"):
            members = [m for m in members if m.user.username.lower().startswith(str(data["query"]).lower())]
        chunk: JSON = {
            "guild_id": str(guild.id),
            "members": [member_payload(m) for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self.send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

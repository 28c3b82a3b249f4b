"""A Discord stand-in for tests: the real discord.py client logs in to it on 127.0.0.1, and a test
plays the members who use the bot. See `server.StandIn` for the test API."""

from .faults import Fault, StreamedAsset
from .harness import assert_no_leaked_tasks, pending_tasks, running_client, wait_until_ready
from .interactions import CommandType, Context, InteractionType, OptionType
from .models import (
    ADMINISTRATOR,
    MANAGE_GUILD,
    ChannelType,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
)
from .records import BotAction, CallbackType, EventLog, InteractionRecord, RejectedRequest, UploadedFile
from .server import DEFAULT_TOKEN, StandIn
from .state import StoredMessage

__all__ = [
    "ADMINISTRATOR",
    "DEFAULT_TOKEN",
    "MANAGE_GUILD",
    "BotAction",
    "CallbackType",
    "ChannelType",
    "CommandType",
    "Context",
    "EventLog",
    "FakeChannel",
    "FakeGuild",
    "FakeMember",
    "FakeRole",
    "FakeUser",
    "Fault",
    "InteractionRecord",
    "InteractionType",
    "OptionType",
    "RejectedRequest",
    "StandIn",
    "StoredMessage",
    "StreamedAsset",
    "UploadedFile",
    "assert_no_leaked_tasks",
    "pending_tasks",
    "running_client",
    "wait_until_ready",
]

"""Fixtures for the stand-in's own tests: a running `StandIn` and a small world inside it."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from PIL import Image

from mmpp.bot.app.discord_endpoints import reset_endpoints
from tests.discord_standin import MANAGE_GUILD, FakeGuild, FakeMember, FakeUser, StandIn


@dataclass
class World:
    guild: FakeGuild
    admin: FakeMember
    member: FakeMember
    dm_user: FakeUser


def png_bytes(size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


# Function-scoped loop on purpose: the project's default fixture loop is the session's, and the
# stand-in must live on the loop the test (and so the discord.py client) runs on.
@pytest_asyncio.fixture(loop_scope="function")
async def discord_standin() -> AsyncIterator[StandIn]:
    async with StandIn() as standin:
        yield standin
        assert not standin.server_errors, standin.server_errors
    reset_endpoints()


@pytest.fixture
def world(discord_standin: StandIn) -> World:
    guild = discord_standin.add_guild("Art Club")
    admins = discord_standin.add_role(guild, "Admins", permissions=MANAGE_GUILD)
    admin = discord_standin.add_member(guild, discord_standin.add_user("ada"), roles=[admins])
    member = discord_standin.add_member(guild, discord_standin.add_user("bo"))
    dm_user = discord_standin.add_user("cy")
    return World(guild=guild, admin=admin, member=member, dm_user=dm_user)

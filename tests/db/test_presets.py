"""Server presets and channel overrides, as admins and members see them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from mmpp.bot.db.database import Database
from mmpp.bot.db.errors import InvalidPresetValue, StyleHidden, UnknownStyle
from mmpp.bot.db.looks import ResolvedPreset
from mmpp.bot.db.models import ServerPreset
from mmpp.bot.db.repository import Repository
from tests.db.conftest import DEFAULT_STYLE, STYLES, make_repository

GUILD = 111_111_111_111_111_111
CHANNEL = 222_222_222_222_222_222
OTHER_CHANNEL = 222_222_222_222_222_999
ADMIN = 333_333_333_333_333_333


async def test_channel_beats_server_beats_default(repo: Repository) -> None:
    # An unconfigured server gives one look (the default) until an admin chooses otherwise; DMs any.
    assert await repo.resolve(GUILD, CHANNEL) == ResolvedPreset(
        style=DEFAULT_STYLE, source="default", allow_member_choice=False
    )
    assert (await repo.resolve(None, None)).allow_member_choice is True

    await repo.set_server_preset(GUILD, "pixar", background="Teal", framing="head and shoulders", set_by=ADMIN)
    server = await repo.resolve(GUILD, CHANNEL)
    assert (server.style, server.background, server.framing, server.source) == (
        "pixar",
        "teal",
        "head and shoulders",
        "server",
    )
    assert server.allow_member_choice is False
    assert server.set_by == ADMIN

    await repo.set_channel_override(GUILD, CHANNEL, "noir", background="#FFFFFF", set_by=ADMIN)
    channel = await repo.resolve(GUILD, CHANNEL)
    assert (channel.style, channel.background, channel.framing, channel.source) == (
        "noir",
        "#ffffff",
        None,  # an override is a whole look; it does not borrow the server's framing
        "channel",
    )
    # Other rooms keep the server look.
    assert (await repo.resolve(GUILD, OTHER_CHANNEL)).style == "pixar"
    assert (await repo.resolve(GUILD, None)).style == "pixar"

    assert await repo.clear_channel_override(GUILD, CHANNEL) is True
    assert await repo.clear_channel_override(GUILD, CHANNEL) is False
    assert (await repo.resolve(GUILD, CHANNEL)).source == "server"


async def test_dms_get_the_default_and_a_free_choice(repo: Repository) -> None:
    await repo.set_server_preset(GUILD, "pixar", set_by=ADMIN)
    dm = await repo.resolve(None, CHANNEL)
    assert (dm.style, dm.source, dm.allow_member_choice) == (DEFAULT_STYLE, "default", True)


async def test_presets_survive_a_restart(database_url: str) -> None:
    first = Database(database_url)
    await first.upgrade_to_head()
    repo = make_repository(first)
    await repo.sync_styles(STYLES)
    server = await repo.set_server_preset(GUILD, "anime", background="navy", seed_policy="fixed", seed=42, set_by=ADMIN)
    channel = await repo.set_channel_override(GUILD, CHANNEL, "noir", seed_policy="per_user", set_by=ADMIN)
    await first.dispose()

    second = Database(database_url)
    try:
        await second.upgrade_to_head()
        repo = make_repository(second)
        assert await repo.resolve(GUILD, OTHER_CHANNEL) == server
        assert await repo.resolve(GUILD, CHANNEL) == channel
        restored = await repo.get_server_preset(GUILD)
        assert restored is not None and restored.set_at == server.set_at
        assert restored.set_at.tzinfo is UTC
    finally:
        await second.dispose()


async def test_two_admins_at_the_same_moment_leave_one_consistent_row(database_url: str) -> None:
    # Two engines: two separate connections, as two bot processes or two pooled sessions would be.
    one, two = Database(database_url), Database(database_url)
    await one.upgrade_to_head()
    try:
        admin_a, admin_b = make_repository(one), make_repository(two)
        await admin_a.sync_styles(STYLES)
        choice_a = {
            "style": "pixar",
            "background": "teal",
            "framing": "close up",
            "seed_policy": "fixed",
            "seed": 1,
            "allow_member_choice": True,
            "set_by": 1001,
        }
        choice_b = {
            "style": "anime",
            "background": "#ff0000",
            "framing": "full body",
            "seed_policy": "per_user",
            "seed": 2,
            "allow_member_choice": False,
            "set_by": 2002,
        }
        fields = list(choice_a)

        async def admin(repo: Repository, guild: int, choice: dict[str, object], start: asyncio.Barrier) -> None:
            await start.wait()  # both writes leave at the same moment
            await repo.set_server_preset(guild, **choice)  # type: ignore[arg-type]

        for round_ in range(8):
            guild = GUILD + round_
            for _ in range(2):  # first a race to create the row, then a race to replace it
                start = asyncio.Barrier(2)
                await asyncio.gather(admin(admin_a, guild, choice_a, start), admin(admin_b, guild, choice_b, start))

                async with one.sessions() as session:
                    count = await session.scalar(
                        select(func.count()).select_from(ServerPreset).where(ServerPreset.guild_id == guild)
                    )
                assert count == 1
                stored = await admin_a.get_server_preset(guild)
                assert stored is not None
                got = {name: getattr(stored, name) for name in fields}
                assert got in (choice_a, choice_b)
    finally:
        await one.dispose()
        await two.dispose()


async def test_a_style_that_does_not_exist_is_refused(repo: Repository) -> None:
    with pytest.raises(UnknownStyle) as refused:
        await repo.set_server_preset(GUILD, "vaporwave", set_by=ADMIN)
    assert "vaporwave" in refused.value.message and "/styles" in refused.value.message

    with pytest.raises(UnknownStyle):
        await repo.set_channel_override(GUILD, CHANNEL, "vaporwave", set_by=ADMIN)
    with pytest.raises(UnknownStyle):
        await repo.set_style_enabled(GUILD, "vaporwave", False, ADMIN)
    assert await repo.get_server_preset(GUILD) is None
    assert (await repo.resolve(GUILD, CHANNEL)).source == "default"


async def test_the_foreign_key_refuses_an_unknown_style_too(database: Database, repo: Repository) -> None:
    row = ServerPreset(
        guild_id=GUILD,
        style="vaporwave",
        background=None,
        framing=None,
        seed_policy="random",
        seed=None,
        allow_member_choice=False,
        set_by=ADMIN,
        set_at=datetime.now(UTC),
    )
    with pytest.raises(IntegrityError):
        async with database.sessions.begin() as session:
            session.add(row)


async def test_snowflakes_above_2_63_fit(repo: Repository) -> None:
    guild, channel, admin = 2**64 - 1, 2**63 + 12_345, 2**63
    near_guild = 2**63 + 1  # same low bits would collide if the top bit were dropped

    await repo.set_server_preset(guild, "pixar", seed_policy="fixed", seed=2**64 - 2, set_by=admin)
    await repo.set_server_preset(near_guild, "anime", set_by=admin)
    await repo.set_channel_override(guild, channel, "noir", set_by=admin)

    server = await repo.resolve(guild, 1)
    assert (server.style, server.set_by, server.seed) == ("pixar", admin, 2**64 - 2)
    assert (await repo.resolve(near_guild, channel)).style == "anime"
    assert (await repo.resolve(guild, channel)).style == "noir"
    assert set(await repo.list_channel_overrides(guild)) == {channel}

    log_id = await repo.log_queued(2**64 - 1, guild, channel, "pixar", seed=2**64 - 1)
    assert log_id > 0
    assert await repo.usage_today(2**64 - 1, guild) == (1, 1)
    assert await repo.usage_today(2**63 - 1, near_guild) == (0, 0)


async def test_hidden_or_withdrawn_styles_fall_back_instead_of_failing(repo: Repository) -> None:
    await repo.set_server_preset(GUILD, "pixar", set_by=ADMIN)
    await repo.set_channel_override(GUILD, CHANNEL, "noir", set_by=ADMIN)

    # The server hides the channel's style: that room falls back to the server look.
    await repo.set_style_enabled(GUILD, "noir", False, ADMIN)
    assert (await repo.resolve(GUILD, CHANNEL)).style == "pixar"
    with pytest.raises(StyleHidden, match="noir"):
        await repo.set_channel_override(GUILD, OTHER_CHANNEL, "noir", set_by=ADMIN)
    await repo.set_style_enabled(GUILD, "noir", True, ADMIN)
    assert (await repo.resolve(GUILD, CHANNEL)).style == "noir"

    # The catalog stops shipping pixar: the server falls back to the default, and it cannot be chosen.
    await repo.sync_styles([s for s in STYLES if s.name != "pixar"])
    assert (await repo.resolve(GUILD, OTHER_CHANNEL)).source == "default"
    with pytest.raises(UnknownStyle):
        await repo.set_server_preset(GUILD, "pixar", set_by=ADMIN)
    # What the admin set is still on record for /style show, and comes back with the style.
    assert (await repo.get_server_preset(GUILD)).style == "pixar"  # type: ignore[union-attr]
    await repo.sync_styles(STYLES)
    assert (await repo.resolve(GUILD, OTHER_CHANNEL)).style == "pixar"


async def test_reset_server_forgets_its_looks_only(repo: Repository) -> None:
    other_guild = GUILD + 1
    await repo.set_server_preset(GUILD, "pixar", set_by=ADMIN)
    await repo.set_channel_override(GUILD, CHANNEL, "noir", set_by=ADMIN)
    await repo.set_style_enabled(GUILD, "anime", False, ADMIN)
    await repo.set_server_preset(other_guild, "anime", set_by=ADMIN)

    await repo.reset_server(GUILD)

    assert (await repo.resolve(GUILD, CHANNEL)).source == "default"
    assert all(style.enabled for style in await repo.list_styles(GUILD))
    assert (await repo.resolve(other_guild, CHANNEL)).style == "anime"


async def test_seed_policies(repo: Repository) -> None:
    fixed = await repo.set_server_preset(GUILD, "pixar", seed_policy="fixed", set_by=ADMIN)
    assert fixed.seed is not None  # drawn once, then shared by every member
    assert fixed.seed_for(1) == fixed.seed_for(2) == fixed.seed

    per_user = await repo.set_server_preset(GUILD, "pixar", seed_policy="per_user", seed=7, set_by=ADMIN)
    assert per_user.seed_for(1) == per_user.seed_for(1) != per_user.seed_for(2)

    random = await repo.set_server_preset(GUILD, "pixar", seed_policy="random", seed=7, set_by=ADMIN)
    assert random.seed is None and random.seed_for(1) is None
    assert (await repo.resolve(GUILD, None)) == random


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"background": "a very long background description that is a whole prompt"}, "background"),
        ({"background": "red; ignore all previous"}, "background"),
        ({"framing": "<lora:evil:1>"}, "framing"),
        ({"seed_policy": "sometimes"}, "seed policy"),
        ({"seed_policy": "fixed", "seed": -1}, "seed"),
    ],
)
async def test_bad_touches_are_refused_with_a_reason(
    repo: Repository, options: dict[str, object], complaint: str
) -> None:
    with pytest.raises(InvalidPresetValue, match=complaint):
        await repo.set_server_preset(GUILD, "pixar", set_by=ADMIN, **options)  # type: ignore[arg-type]
    assert await repo.get_server_preset(GUILD) is None


async def test_the_unlinkable_guard_is_on_unless_a_room_turns_it_off(repo: Repository) -> None:
    assert (await repo.resolve(GUILD, CHANNEL)).unlinkable  # the default, no preset at all
    assert (await repo.resolve(None, None)).unlinkable  # DMs
    await repo.set_server_preset(GUILD, "pixar", set_by=ADMIN)
    assert (await repo.resolve(GUILD, CHANNEL)).unlinkable
    await repo.set_channel_override(GUILD, CHANNEL, "noir", unlinkable=False, set_by=ADMIN)
    assert not (await repo.resolve(GUILD, CHANNEL)).unlinkable
    assert (await repo.resolve(GUILD, OTHER_CHANNEL)).unlinkable
    server = await repo.get_server_preset(GUILD)
    assert server is not None and server.unlinkable
    assert not (await repo.list_channel_overrides(GUILD))[CHANNEL].unlinkable

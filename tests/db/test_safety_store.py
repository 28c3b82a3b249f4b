"""The schema additions for issue 11 on both backends: hidden defaults, "filtered" outcomes, and
each server's choice for NSFW channels."""

from __future__ import annotations

import pytest

from mmpp.bot.db.errors import NoStyleShown
from mmpp.bot.db.looks import ResolvedPreset
from mmpp.bot.db.options import ServerOptions
from mmpp.bot.db.repository import Repository
from tests.db.conftest import DEFAULT_STYLE, STYLES

GUILD = 111_111_111_111_111_111
OTHER_GUILD = 111_111_111_111_111_222
ADMIN = 333_333_333_333_333_333


async def test_a_hidden_default_gives_way_to_the_first_style_still_shown(repo: Repository) -> None:
    await repo.set_style_enabled(GUILD, DEFAULT_STYLE, False, ADMIN)
    assert await repo.resolve(GUILD, None) == ResolvedPreset(style="anime")
    assert (await repo.resolve(OTHER_GUILD, None)).style == DEFAULT_STYLE  # only where it was hidden
    # A preset whose style is hidden falls through to the same place, not to the hidden default.
    await repo.set_server_preset(GUILD, "noir", set_by=ADMIN)
    await repo.set_style_enabled(GUILD, "noir", False, ADMIN)
    assert (await repo.resolve(GUILD, None)).style == "anime"

    for style in STYLES:
        await repo.set_style_enabled(GUILD, style.name, False, ADMIN)
    with pytest.raises(NoStyleShown):
        await repo.resolve(GUILD, None)


async def test_a_filtered_portrait_is_logged_and_counts_against_the_quota(repo: Repository) -> None:
    log_id = await repo.log_queued(1, GUILD, 2, DEFAULT_STYLE, seed=5)
    assert await repo.log_finished(log_id, "filtered")
    failed = await repo.log_queued(1, GUILD, 2, DEFAULT_STYLE, seed=6)
    await repo.log_finished(failed, "failed", "engine_error")
    assert tuple(await repo.usage_today(1, GUILD)) == (1, 1)


async def test_nsfw_relaxation_is_per_server_and_reset_forgets_it(repo: Repository) -> None:
    async def relaxed(guild: int) -> bool:
        return (await repo.server_options(guild)).relax_in_nsfw_channels

    assert await relaxed(GUILD) is False
    await repo.set_server_options(GUILD, relax_in_nsfw_channels=True, set_by=ADMIN)
    await repo.set_server_options(GUILD, relax_in_nsfw_channels=True, set_by=ADMIN)  # twice: an update, not a clash
    assert (await relaxed(GUILD), await relaxed(OTHER_GUILD)) == (True, False)
    await repo.forget_server_options(GUILD)
    assert await relaxed(GUILD) is False


async def test_public_by_default_is_per_server_kept_apart_from_the_safety_choice(repo: Repository) -> None:
    async def public_and_relaxed(guild: int) -> tuple[bool, bool]:
        options = await repo.server_options(guild)
        return options.public_by_default, options.relax_in_nsfw_channels

    assert (await public_and_relaxed(GUILD))[0] is False  # no row: private until the member posts
    await repo.set_server_options(GUILD, public_by_default=True, set_by=ADMIN)
    assert await public_and_relaxed(GUILD) == (True, False)
    await repo.set_server_options(GUILD, relax_in_nsfw_channels=True, set_by=ADMIN)  # one choice keeps the other
    assert await public_and_relaxed(GUILD) == (True, True)
    assert (await public_and_relaxed(OTHER_GUILD))[0] is False
    await repo.forget_server_options(GUILD)
    assert (await public_and_relaxed(GUILD))[0] is False


async def test_a_name_that_is_not_a_declared_server_option_is_refused(repo: Repository) -> None:
    with pytest.raises(TypeError):
        await repo.set_server_options(GUILD, public_by_defualt=True, set_by=ADMIN)
    assert await repo.server_options(GUILD) == ServerOptions()

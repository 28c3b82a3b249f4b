"""A bot.env written before the rename still says DEFAULT_STYLE=simpsons: the bot starts on its new name."""

from __future__ import annotations

import pytest

from tests.bot.conftest import World
from tests.bot.test_rooms import style_command


@pytest.fixture
def bot_overrides() -> dict[str, object]:
    return {"builtin_styles": True, "default_style": "simpsons"}


async def test_the_old_default_name_means_the_renamed_built_in(world: World) -> None:
    assert world.services.repo.default_style == "sunny-cartoon"
    shown = await style_command(world, "show", world.admin)
    assert "Sunny Cartoon" in shown and "sunny-cartoon" not in shown

"""Today's bot tests that do not depend on where the engine runs, again with QUEUE_BACKEND=redis: the
bot runs no engine, one `RemoteWorker` (in this process, for speed) draws through the shared Redis.

Tests that hold the engine at a gate (`engine_gate`) look inside the bot's own engine and stay local;
tests/scale runs real worker processes."""

from __future__ import annotations

import pytest

from tests.bot.conftest import World
from tests.bot.test_profile import (  # noqa: F401 - collected again here, with the redis backend
    test_dm_profile_lets_the_member_pick_a_style,
    test_guild_profile_ends_with_one_png_after_progress_edits,
    test_queue_and_cancel,
    test_reroll_draws_again_with_a_new_seed_and_delete_removes_it,
    test_the_avatar_menu_draws_your_own_avatar,
)
from tests.bot.test_rooms import (  # noqa: F401
    test_a_member_cannot_pick_another_style_once_the_room_has_one,
    test_bad_input_is_an_ephemeral_error_and_the_bot_keeps_going,
    test_preview_list_and_hiding_a_style,
)
from tests.bot.test_startup import log_lines, test_the_token_never_appears_in_logs  # noqa: F401


@pytest.fixture
def queue_backend() -> str:
    return "redis"


async def test_the_portrait_comes_from_the_worker_not_the_bot(world: World, selfie_bytes: bytes) -> None:
    queue = world.services.queue
    assert queue.engines == [] and queue.workers == 1  # the one remote worker's slot
    interaction = await world.standin.send_slash_command(
        "profile", user=world.members[0], attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    await interaction.wait_for_final_file(timeout=60)
    assert queue.seconds_per_job > 0 and not hasattr(queue.preparer, "generate")

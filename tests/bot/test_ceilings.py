"""The operator's ceilings over what a server's admins choose: /style set refuses past them in one
line, and a server's stored choice past a ceiling set later is held to it where it is used."""

from __future__ import annotations

import pytest

from mmpp.bot.db.options import ServerOptions
from mmpp.inference.testing.recording import RecordingEngine
from mmpp.settings import load_settings
from tests.bot.conftest import World
from tests.bot.test_rooms import style_command

CEILINGS = {
    "server_max_candidates": 2, "servers_may_relax_safety": False, "servers_may_post_by_default": False,
    "servers_may_disable_guard": False,
}


def test_the_ceilings_default_to_todays_choices() -> None:
    settings = load_settings(None)
    assert settings.server_max_candidates == 4 and settings.candidates is None
    assert settings.servers_may_relax_safety and settings.servers_may_post_by_default
    assert settings.servers_may_disable_guard


@pytest.mark.parametrize("bot_overrides", [CEILINGS])
async def test_style_set_refuses_past_the_operators_ceilings_in_one_line(world: World) -> None:
    for options, words in (
        ({"candidates": 3}, "at most 2 for `candidates`"),
        ({"relax_safety": True}, "doesn't let servers set `relax_safety:true`"),
        ({"public": True}, "`public:true`"),
        ({"unlinkable": False}, "`unlinkable:false`"),
    ):
        answer = await style_command(world, "set", world.admin, **options)
        assert words in answer and "\n" not in answer, answer
    assert await world.services.repo.server_options(world.guild.id) == ServerOptions(), "nothing was stored"
    # Discord offers admins no more takes than the ceiling in the first place.
    [style] = [c for c in world.standin.synced_commands() if c["name"] == "style"]
    [set_command] = [o for o in style["options"] if o["name"] == "set"]
    [candidates] = [o for o in set_command["options"] if o["name"] == "candidates"]
    assert candidates["max_value"] == 2
    assert (await world.services.repo.resolve(world.guild.id, None)).source != "server"
    # Within them, as before.
    assert "Takes per request" in await style_command(world, "set", world.admin, candidates=2)
    assert "Takes per request" in await style_command(world, "set", world.admin, relax_safety=False)


@pytest.mark.parametrize("bot_overrides", [CEILINGS])
async def test_a_stored_choice_past_a_ceiling_set_later_is_held_to_it(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    engine_gate.release()
    repo, admin = world.services.repo, world.admin.user.id
    # What the server chose before the operator set the ceilings.
    await repo.set_server_options(
        world.guild.id, set_by=admin, candidates=4, relax_in_nsfw_channels=True, public_by_default=True
    )
    await repo.set_server_preset(world.guild.id, "tiny-style", unlinkable=False, set_by=admin)
    after_dark = world.guild.add_channel("after-dark")
    after_dark.nsfw = True

    async def draw() -> str:
        interaction = await world.standin.send_slash_command(
            "profile", user=world.members[0], channel_id=after_dark.id, attachments={"selfie": ("me.jpg", selfie_bytes)}
        )
        return (await interaction.wait_for_final_file(timeout=60)).content or ""

    await draw()
    [request, *others] = engine_gate.requests
    assert len(others) == 1, "two takes, not the stored four"
    assert (request.safety, request.unlinkable) == ("strict", True)

    await repo.set_server_options(world.guild.id, set_by=admin, candidates=1)
    content = await draw()
    assert "posted in the channel too" not in content and world.standin.public_messages() == []
    shown = await style_command(world, "show", world.admin)
    assert "private until the member presses Post" in shown and "strict everywhere" in shown

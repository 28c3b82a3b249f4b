"""An admin picks a background by name in their own language or writes one in English."""

from __future__ import annotations

from mmpp.bot.words import background_labels
from mmpp.inference.backgrounds import BACKGROUNDS
from mmpp.inference.testing.recording import RecordingEngine
from tests.bot.conftest import World
from tests.bot.test_profile import profile
from tests.bot.test_rooms import style_command


def test_every_named_background_has_an_english_and_a_korean_label() -> None:
    assert set(background_labels.LABELS) == set(BACKGROUNDS)
    for name in background_labels.LABELS:
        assert not background_labels.label(name, "ko").isascii() and background_labels.label(name, "en-US").isascii()
    assert background_labels.label("night-sky", "ko") == "밤하늘"
    assert background_labels.label("night-sky", "en-US") == "Night sky"
    assert background_labels.label("night-sky", "fr") == "Night sky"  # no French yet: English
    assert background_labels.label("teal", "ko") == "teal"  # a free one, as typed
    assert background_labels.named(" 밤하늘 ") == background_labels.named("NIGHT SKY") == "night-sky"
    assert background_labels.named("teal") is None


async def test_an_admin_picks_one_in_korean_and_the_prompt_gets_english(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    engine_gate.release()
    typing = await world.standin.send_autocomplete(
        "style set", {"style": "tiny-style", "background": "밤"}, focused="background", user=world.admin,
        locale="ko",
    )
    assert [(c["name"], c["value"]) for c in await typing.wait_for_choices()] == [("밤하늘", "night-sky")]
    typing = await world.standin.send_autocomplete(
        "style set", {"style": "tiny-style", "background": "rainy window"}, focused="background",
        user=world.admin,
    )
    assert [c["value"] for c in await typing.wait_for_choices()] == ["rainy window"]  # free English is offered

    # Typed, not picked: the label still means the named background.
    shown = await style_command(world, "set", world.admin, style="tiny-style", background="밤하늘")
    assert "Night sky" in shown
    await (await profile(world, world.members[0], selfie_bytes)).wait_for_final_file(timeout=120)
    [request] = engine_gate.requests
    assert request.background == "night-sky"
    prompt = world.engine.catalog.get("tiny-style").definition.render_prompt(request.background)
    assert BACKGROUNDS["night-sky"] in prompt

    shown = await style_command(world, "set", world.admin, style="tiny-style", background="rainy window")
    assert "rainy window" in shown
    refused = await world.standin.send_slash_command(
        "style set", {"style": "tiny-style", "background": "비 오는 창문"}, user=world.admin, enforce_permissions=False
    )
    assert "in English" in ((await refused.wait_for_message()).content or "")

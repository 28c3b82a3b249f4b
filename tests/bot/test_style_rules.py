"""What a server hides stays hidden: from Reroll buttons, the default style, autocomplete and errors."""

from __future__ import annotations

from mmpp.inference.testing.recording import RecordingEngine
from tests.bot.conftest import World
from tests.bot.test_profile import custom_id, profile
from tests.bot.test_rooms import profile_style, style_command


async def test_an_old_reroll_button_follows_the_rooms_new_rules(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    engine_gate.release()
    member = world.members[0]
    first = await (await profile(world, member, selfie_bytes)).wait_for_final_file(timeout=60)
    assert first.files[0].filename == "portrait-tiny-style.png"
    reroll = custom_id(first, "mmpp:reroll")

    # Members may still choose, but the button's style is now hidden here.
    await style_command(world, "set", world.admin, style="other-style", allow_member_choice=True)
    await style_command(world, "available", world.admin, style="tiny-style", shown=False)
    pressed = await world.standin.send_component(first, reroll, user=member)
    refusal = await pressed.wait_for_message()
    assert refusal.ephemeral and "Tiny Style style isn't available here any more" in (refusal.content or "")

    # Shown again, but the room is locked to one style.
    await style_command(world, "available", world.admin, style="tiny-style", shown=True)
    await style_command(world, "set", world.admin, style="other-style", allow_member_choice=False)
    pressed = await world.standin.send_component(first, reroll, user=member)
    refusal = await pressed.wait_for_message()
    assert refusal.ephemeral and "same style (Other Style)" in (refusal.content or "")
    assert engine_gate.styles() == [["tiny-style"]], "neither refused reroll reached the GPU"


async def test_hiding_the_default_style_takes_it_away(world: World, selfie_bytes: bytes) -> None:
    # No preset on this server: the default (tiny-style) applies until it is hidden.
    await style_command(world, "available", world.admin, style="tiny-style", shown=False)
    assert await profile_style(world, world.members[0], selfie_bytes) == "other-style"
    assert "`other-style`" in await style_command(world, "show", world.admin)

    await style_command(world, "available", world.admin, style="other-style", shown=False)
    interaction = await profile(world, world.members[1], selfie_bytes)
    refusal = await interaction.wait_for_message()
    assert refusal.ephemeral and "turned every style off" in (refusal.content or "")


async def test_members_never_see_hidden_style_names(world: World, selfie_bytes: bytes) -> None:
    await style_command(world, "set", world.admin, style="tiny-style", allow_member_choice=True)
    await style_command(world, "available", world.admin, style="other-style", shown=False)

    # Autocomplete on an admin command runs without the command's permission check.
    typing = await world.standin.send_autocomplete(
        "style available", {"style": ""}, focused="style", user=world.members[0]
    )
    assert [c["value"] for c in await typing.wait_for_choices()] == ["tiny-style"]
    typing = await world.standin.send_autocomplete("style available", {"style": ""}, focused="style",
                                                   user=world.admin)
    assert [c["name"] for c in await typing.wait_for_choices()] == ["Other Style (hidden)", "Tiny Style"]

    interaction = await profile(world, world.members[0], selfie_bytes, style="no-such-style")
    refusal = await interaction.wait_for_message()
    text = refusal.content or ""
    assert refusal.ephemeral and "There is no style called 'no-such-style'" in text
    assert "Tiny Style" in text and "other" not in text.lower()

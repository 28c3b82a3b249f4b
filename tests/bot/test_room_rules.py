"""A portrait remembers the room it was drawn in: Post (the reply's, /last's, one pressed long after)
publishes it only where the rules it passed hold now, and says why elsewhere. Delete forgets only
its presser's own."""

from __future__ import annotations

from tests.bot.conftest import World
from tests.bot.test_profile import custom_id
from tests.bot.test_rooms import style_command
from tests.discord_standin import BotAction, FakeMember, InteractionRecord


def post_ids(action: BotAction) -> list[str]:
    return [cid for cid in action.custom_ids if cid.startswith("mmpp:post:")]


def copy_button(world: World, onto: BotAction, custom: str) -> str:
    """A button `custom` on `onto`'s message, as a modified client could send it (Discord's own check
    that a button is on its message is not what the bot relies on)."""
    assert onto.message_id is not None
    stored = world.standin.message(onto.message_id)
    stored.components.append(
        {"type": 1, "components": [{"type": 2, "style": 2, "label": "x", "custom_id": custom}]}
    )
    return custom


async def last(world: World, member: FakeMember, channel_id: int | None = None) -> BotAction:
    asked = await world.standin.send_slash_command("last", user=member, channel_id=channel_id)
    shown = await asked.wait_for_message()
    assert shown.ephemeral and shown.files, "the portrait itself, privately, wherever /last is run"
    return shown


async def refused(world: World, message: BotAction, custom: str, member: FakeMember, words: str) -> None:
    before = len(world.standin.public_messages())
    answer = await (await world.standin.send_component(message, custom, user=member)).wait_for_message()
    assert answer.ephemeral and words in (answer.content or ""), answer.content
    assert len(world.standin.public_messages()) == before, "nothing posted"


async def posted(world: World, message: BotAction, member: FakeMember) -> None:
    before = len(world.standin.public_messages())
    pressed = await world.standin.send_component(message, post_ids(message)[0], user=member)
    await pressed.wait_for_message()
    assert len(world.standin.public_messages()) == before + 1
    assert world.standin.public_messages()[-1].channel_id == pressed.channel_id


async def drawn(world: World, member: object, selfie: bytes, channel_id: int | None = None,
                **options: object) -> tuple[InteractionRecord, BotAction]:
    interaction = await world.standin.send_slash_command(
        "profile", options or None, user=member, channel_id=channel_id,  # type: ignore[arg-type]
        attachments={"selfie": ("me.jpg", selfie)},
    )
    return interaction, await interaction.wait_for_final_file(timeout=60)


RELAXED = "relaxed safety check"


async def test_a_relaxed_picture_is_refused_in_an_ordinary_channel(world: World, selfie_bytes: bytes) -> None:
    after_dark = world.guild.add_channel("after-dark")
    after_dark.nsfw = True
    await style_command(world, "set", world.admin, relax_safety=True)
    member = world.members[0]
    _, final = await drawn(world, member, selfie_bytes, after_dark.id)

    shown = await last(world, member)  # an ordinary channel
    assert post_ids(shown) == [] and RELAXED in (shown.content or "")
    await refused(world, shown, copy_button(world, shown, post_ids(final)[0]), member, RELAXED)
    await posted(world, final, member)  # where it was drawn, it still may


async def test_a_style_the_server_hides_drawn_in_a_dm_is_not_posted_there(world: World, selfie_bytes: bytes) -> None:
    member = world.members[1]
    await style_command(world, "set", world.admin, style="tiny-style", allow_member_choice=True)
    await style_command(world, "available", world.admin, style="other-style", shown=False)
    _, final = await drawn(world, member.user, selfie_bytes, style="other-style")
    assert final.files[0].filename == "portrait-other-style.png"

    shown = await last(world, member)
    assert post_ids(shown) == [] and "Other Style style isn't offered here" in (shown.content or "")
    await refused(world, shown, copy_button(world, shown, post_ids(final)[0]), member, "isn't offered here")


async def test_a_guard_off_portrait_is_not_posted_where_the_guard_is_required(
    world: World, selfie_bytes: bytes
) -> None:
    member = world.members[2]
    _, final = await drawn(world, member.user, selfie_bytes, unlinkable=False)  # a DM: the member's choice
    guard = "unlinkable guard off"
    shown = await last(world, member)  # the server keeps the guard on, and members may not turn it off
    assert post_ids(shown) == [] and guard in (shown.content or "")
    await refused(world, shown, copy_button(world, shown, post_ids(final)[0]), member, guard)

    # Where members may choose, they could have turned it off here too: the portrait may go.
    await style_command(world, "set", world.admin, allow_member_choice=True)
    await posted(world, await last(world, member), member)


async def test_last_in_another_server_offers_post_only_where_the_rules_hold(
    world: World, selfie_bytes: bytes
) -> None:
    member = world.members[0]
    await drawn(world, member, selfie_bytes)
    one_look = world.standin.add_guild("One Look")
    await world.services.repo.set_server_preset(one_look.id, "other-style", set_by=world.admin.user.id)
    there = world.standin.add_member(one_look, member.user)
    shown = await last(world, there)
    assert post_ids(shown) == [] and "same style (Other Style)" in (shown.content or "")

    open_server = world.standin.add_guild("Open Server")
    elsewhere = world.standin.add_member(open_server, member.user)
    await posted(world, await last(world, elsewhere), elsewhere)


async def test_the_replys_own_post_checks_the_room_as_it_is_when_pressed(
    world: World, selfie_bytes: bytes
) -> None:
    member = world.members[1]
    _, final = await drawn(world, member, selfie_bytes)
    await style_command(world, "set", world.admin, style="other-style")  # one look, another style
    await refused(world, final, post_ids(final)[0], member, "same style (Other Style)")
    await style_command(world, "set", world.admin, style="tiny-style")
    await posted(world, final, member)


async def test_a_post_past_the_memory_limits_goes_only_to_its_own_channel_after_the_same_check(
    world: World, selfie_bytes: bytes
) -> None:
    member = world.members[2]
    interaction, final = await drawn(world, member, selfie_bytes)
    side = world.guild.add_channel("side")
    shown = await last(world, member, side.id)
    assert post_ids(shown), "the same rules hold in #side"
    world.services.results.clear()  # the kept set is gone: only the messages hold the picture now
    await refused(world, shown, post_ids(shown)[0], member, "I no longer have that portrait")
    await posted(world, final, member)
    assert world.standin.public_messages()[-1].channel_id == interaction.channel_id

    # A relaxed picture whose set is gone: the room is checked as it is now all the same.
    after_dark = world.guild.add_channel("after-dark")
    after_dark.nsfw = True
    await style_command(world, "set", world.admin, relax_safety=True)
    _, relaxed = await drawn(world, member, selfie_bytes, after_dark.id)
    world.services.results.clear()
    await style_command(world, "set", world.admin, relax_safety=False)
    await refused(world, relaxed, post_ids(relaxed)[0], member, RELAXED)
    await style_command(world, "set", world.admin, relax_safety=True)
    await posted(world, relaxed, member)


async def test_a_forged_delete_forgets_nothing_of_another_members(world: World, selfie_bytes: bytes) -> None:
    victim, attacker = world.members[0], world.members[1]
    _, theirs = await drawn(world, victim, selfie_bytes)
    _, mine = await drawn(world, attacker, selfie_bytes)
    _, _, owner, face, kept = custom_id(theirs, "mmpp:delete").split(":")
    assert owner == str(victim.user.id)
    forged = copy_button(world, mine, f"mmpp:delete:{attacker.user.id}:{face}:{kept}")
    pressed = await world.standin.send_component(mine, forged, user=attacker)
    await pressed.wait_for(lambda a: a.kind == "delete_message", timeout=10)  # only the attacker's own reply goes

    assert world.services.faces.get(face, victim.user.id) is not None, "the victim can still reroll"
    assert world.services.results.get(kept, victim.user.id) is not None
    await posted(world, theirs, victim)


async def test_delete_still_forgets_the_members_own(world: World, selfie_bytes: bytes) -> None:
    member = world.members[2]
    _, final = await drawn(world, member, selfie_bytes)
    _, _, _, face, kept = custom_id(final, "mmpp:delete").split(":")
    pressed = await world.standin.send_component(final, custom_id(final, "mmpp:delete"))
    await pressed.wait_for(lambda a: a.kind == "delete_message", timeout=10)
    assert world.services.faces.get(face, member.user.id) is None
    assert world.services.results.get(kept, member.user.id) is None
    nothing = await (await world.standin.send_slash_command("last", user=member)).wait_for_message()
    assert not nothing.files


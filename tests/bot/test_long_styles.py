"""A style with the longest name a style folder may have and a very long title, used end to end: Discord
refuses a whole message whose component ids run over 100 characters and a whole autocomplete answer
whose choice names do, and the stand-in refuses them the same way (`tests/discord_standin/limits.py`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydantic
import pytest

from mmpp.bot.portrait.buttons import DeleteButton, PostButton, RerollButton
from mmpp.bot.stores import TimedStore
from mmpp.inference.style_definition import StyleDefinition
from mmpp.inference.testing.tiny_model import add_tiny_style
from tests.bot.conftest import World
from tests.bot.test_profile import custom_id, profile

CUSTOM_ID_LENGTH = 100  # Discord's limit on a component's custom_id


def longest_style_name() -> str:
    """The longest name `StyleDefinition` accepts, found by asking it (a style folder's name is its id)."""
    longest = ""
    for length in range(1, 200):
        try:
            longest = StyleDefinition(name="a" * length).name
        except pydantic.ValidationError:
            return longest
    raise AssertionError("style names have no length limit: the buttons' ids could run over 100 characters")


LONG = longest_style_name()
LONG_TITLE = "A Very Long Style Title, " * 12  # 300 characters: over an autocomplete choice's 100
LONG_DESCRIPTION = "A very long description. " * 200  # 5000: over an embed's 4096 and, with the rest, 6000


@pytest.fixture(scope="module")
def bot_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("long-style-model") / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    add_tiny_style(model_dir, LONG, seed=7, display_name=LONG_TITLE.strip(), description=LONG_DESCRIPTION)
    return model_dir


def test_the_buttons_ids_fit_discords_limit_for_any_style_a_folder_may_name() -> None:
    """Each id carries the style's name, the owner's id and kept tokens: with the longest of each it
    still fits. A longer style name (or token) than today's must change what the ids carry first."""
    owner = 2**64 - 1  # the largest snowflake
    store: TimedStore[bytes] = TimedStore(ttl_s=60, size=len)
    token = store.put(b"", owner)
    ids = [
        PostButton(owner, LONG, token, 9, "ruk").item.custom_id,
        RerollButton(owner, LONG, token, likeness=True).item.custom_id,
        DeleteButton(owner, token, token).item.custom_id,
    ]
    assert all(cid is not None and len(cid) <= CUSTOM_ID_LENGTH for cid in ids), [len(c or "") for c in ids]


async def test_a_long_named_style_is_drawn_posted_rerolled_and_deleted(world: World, selfie_bytes: bytes) -> None:
    await world.services.repo.set_server_preset(world.guild.id, LONG, set_by=world.admin.user.id)
    member = world.members[0]
    final = await (await profile(world, member, selfie_bytes)).wait_for_final_file(timeout=60)
    assert final.files[0].filename == f"portrait-{LONG}.png"
    assert {cid.split(":")[1] for cid in final.custom_ids} == {"post", "reroll", "delete"}

    post = await world.standin.send_component(final, custom_id(final, "mmpp:post"))
    await post.wait_for_message()
    [public] = world.standin.public_messages()
    assert [a["filename"] for a in public.attachments] == [f"portrait-{LONG}.png"]

    reroll = await world.standin.send_component(final, custom_id(final, "mmpp:reroll"))
    second = await reroll.wait_for_final_file(timeout=60)
    delete = await world.standin.send_component(second, custom_id(second, "mmpp:delete"))
    await delete.wait_for(lambda a: a.kind == "delete_message", timeout=10)


async def test_in_a_dm_and_a_user_install_too(world: World, selfie_bytes: bytes) -> None:
    dm = await profile(world, world.dm_user, selfie_bytes, style=LONG)
    final = await dm.wait_for_final_file(timeout=60)
    post = await world.standin.send_component(final, custom_id(final, "mmpp:post"))
    shown = await post.wait_for_message()
    assert shown.files and shown.files[0].filename == f"portrait-{LONG}.png"
    reroll = await world.standin.send_component(final, custom_id(final, "mmpp:reroll"))
    await reroll.wait_for_final_file(timeout=60)

    # Where only the member installed the bot, any published style is theirs to pick: the same buttons.
    installed = await world.standin.send_slash_command(
        "profile", {"style": LONG}, user=world.members[1], attachments={"selfie": ("me.jpg", selfie_bytes)},
        installed_by="user",
    )
    mine = await installed.wait_for_final_file(timeout=60)
    assert {cid.split(":")[1] for cid in mine.custom_ids} == {"post", "reroll", "delete"}
    # Its Reroll is a click on the member's own install too (Discord carries the install that made the
    # message): the server's one-look rule, which never applied to this reply, does not refuse it.
    again = await world.standin.send_component(mine, custom_id(mine, "mmpp:reroll"))
    await again.wait_for_final_file(timeout=60)


async def test_autocomplete_offers_a_long_title_cut_to_what_discord_takes(world: World) -> None:
    typing = await world.standin.send_autocomplete("profile", {"style": ""}, focused="style", user=world.dm_user)
    choices = {c["value"]: c["name"] for c in await typing.wait_for_choices()}
    assert len(choices[LONG]) == 100 and choices[LONG].endswith("…")
    assert LONG_TITLE.startswith(choices[LONG][:-1])

    # An admin's /style available offers hidden styles too, marked so even where the title is cut.
    await world.services.repo.set_style_enabled(world.guild.id, LONG, False, world.admin.user.id)
    typing = await world.standin.send_autocomplete(
        "style available", {"style": "", "shown": True}, focused="style", user=world.admin
    )
    choices = {c["value"]: c["name"] for c in await typing.wait_for_choices()}
    assert len(choices[LONG]) <= 100 and choices[LONG].endswith("… (hidden)"), choices[LONG]


async def test_cards_and_the_rooms_look_show_a_long_title_cut_to_an_embeds_title(world: World) -> None:
    members = await world.standin.send_slash_command("styles", user=world.dm_user)
    cards = (await members.wait_for_message()).embeds
    titles = [e["title"] for e in cards]
    assert "Tiny Style" in titles and any(len(t) == 256 and t.endswith("…") for t in titles), titles
    [long_card] = [e for e in cards if e["title"] != "Tiny Style"]
    assert long_card["description"].endswith("…") and LONG_DESCRIPTION.startswith(long_card["description"][:-1])

    await world.services.repo.set_server_preset(world.guild.id, LONG, set_by=world.admin.user.id)
    shown = await world.standin.send_slash_command("style show", user=world.admin, enforce_permissions=False)
    [look] = (await shown.wait_for_message()).embeds
    assert len(look["title"]) == 256 and look["title"].startswith("This channel: A Very Long Style Title")

    # Twenty channels of their own in that style: the list is cut to what one embed field may hold.
    channels = [10**18 + n for n in range(20)]
    for channel in channels:
        await world.services.repo.set_channel_override(world.guild.id, channel, LONG, set_by=world.admin.user.id)
    shown = await world.standin.send_slash_command("style show", user=world.admin, enforce_permissions=False)
    [look] = (await shown.wait_for_message()).embeds
    [listed] = [f["value"] for f in look["fields"] if f["name"] == "Channels with their own style"]
    assert len(listed) <= 1024 and listed.endswith("…") and "A Very Long Style" in listed
    for channel in channels:
        await world.services.repo.clear_channel_override(world.guild.id, channel)

    await world.services.repo.set_style_enabled(world.guild.id, LONG, False, world.admin.user.id)
    listing = await world.standin.send_slash_command("style list", user=world.admin, enforce_permissions=False)
    cards = (await listing.wait_for_message()).embeds
    [card] = [e for e in cards if e["title"].startswith("A Very Long Style Title")]
    # Admins pick styles by title (`/style set`'s autocomplete): no card shows a style's id.
    assert all(LONG not in str(e.get("fields", [])) for e in cards), cards
    assert len(card["title"]) <= 256 and card["title"].endswith("… (hidden on this server)"), card["title"]

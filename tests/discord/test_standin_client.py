"""The real discord.py client against the stand-in: login, sync, GUILD_CREATE, interactions both ways."""

from __future__ import annotations

import asyncio

import aiohttp
import discord
import pytest

from tests.discord_standin import (
    CallbackType,
    StandIn,
    assert_no_leaked_tasks,
    pending_tasks,
    running_client,
)

from .conftest import World, png_bytes
from .echo_bot import EchoBot


async def test_login_sync_and_guild_create(discord_standin: StandIn, world: World) -> None:
    before = set(pending_tasks())
    bot = EchoBot()
    async with running_client(bot, discord_standin):
        assert bot.user is not None and bot.user.id == discord_standin.bot_user.id
        assert bot.application_id == discord_standin.application_id

        ((scope, body),) = discord_standin.command_syncs
        assert scope is None
        assert {c["name"] for c in body} == {
            "ping",
            "echo-image",
            "card",
            "lifecycle",
            "avatar-size",
            "slow",
            "style",
            "Make their portrait",
        }
        echo = next(c for c in body if c["name"] == "echo-image")
        assert echo["options"][0] == {**echo["options"][0], "name": "image", "type": 11, "required": True}
        # discord.py built its AppCommand objects from the stand-in's answer, ids included.
        assert {c.name: str(c.id) for c in bot.synced} == {
            c["name"]: c["id"] for c in discord_standin.synced_commands()
        }

        guild = bot.get_guild(world.guild.id)
        assert guild is not None and guild.name == "Art Club"
        assert [c.name for c in guild.text_channels] == ["general"]
        admin = guild.get_member(world.admin.id)
        member = guild.get_member(world.member.id)
        assert admin is not None and member is not None
        assert admin.guild_permissions.manage_guild
        assert not member.guild_permissions.manage_guild
        assert guild.me.id == discord_standin.bot_user.id
        assert guild.chunked

        query = discord_standin.gateway.connections[0]
        assert query == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
        assert discord_standin.unknown_routes == []
    assert bot.is_closed()
    await assert_no_leaked_tasks(before)


async def test_json_content_type_is_exact(discord_standin: StandIn) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{discord_standin.api_base}/gateway") as response,
    ):
        assert response.headers["Content-Type"] == "application/json"
        assert (await response.json())["url"] == discord_standin.gateway_url


async def test_guild_and_dm_slash_commands_round_trip(discord_standin: StandIn, world: World) -> None:
    bot = EchoBot()
    async with running_client(bot, discord_standin):
        in_guild = await discord_standin.send_slash_command("ping", user=world.admin)
        reply = await in_guild.wait_for_callback()
        assert reply.callback_type == CallbackType.CHANNEL_MESSAGE
        assert reply.content == "pong" and not reply.ephemeral

        in_dm = await discord_standin.send_slash_command("ping", user=world.dm_user)
        assert (await in_dm.wait_for_callback()).content == "pong"

    seen_guild, seen_dm = bot.seen.interactions
    assert seen_guild.guild_id == world.guild.id
    assert seen_guild.channel_id == world.guild.default_channel.id
    assert isinstance(seen_guild.user, discord.Member) and seen_guild.permissions.manage_guild
    assert seen_guild.context.guild
    assert seen_dm.guild_id is None and isinstance(seen_dm.channel, discord.DMChannel)
    assert isinstance(seen_dm.user, discord.User) and seen_dm.user.id == world.dm_user.id
    assert seen_dm.context.dm_channel
    assert bot.seen.errors == []


async def test_deferred_image_edits_button_and_ephemeral_followups(
    discord_standin: StandIn, world: World
) -> None:
    before = set(pending_tasks())
    image = png_bytes()
    bot = EchoBot()
    async with running_client(bot, discord_standin):
        interaction = await discord_standin.send_slash_command(
            "echo-image", attachments={"image": ("selfie.png", image)}, user=world.member
        )
        final = await interaction.wait_for_final_file(timeout=10)
        assert final.kind == "edit_original"
        assert final.file.data == image
        assert final.file.filename == "echo.png" and final.file.content_type == "image/png"
        assert final.content == "Here it is"
        assert final.custom_ids == ["echo:again", "echo:done"]
        # The attachment the edit created is served back by the CDN, at its own URL.
        (attachment,) = final.attachments
        async with aiohttp.ClientSession() as session, session.get(attachment["url"]) as response:
            assert await response.read() == image

        note = await interaction.wait_for(lambda a: a.kind == "followup")
        assert note.ephemeral and note.content == f"Read {len(image)} bytes."
        assert note.message_id != final.message_id

        kinds = [(a.kind, a.callback_type, a.content) for a in interaction.actions]
        assert kinds == [
            ("callback", CallbackType.DEFERRED_CHANNEL_MESSAGE, ""),
            ("edit_original", None, "Working… step 1/2"),
            ("edit_original", None, "Working… step 2/2"),
            ("edit_original", None, "Here it is"),
            ("followup", None, f"Read {len(image)} bytes."),
        ]
        assert interaction.actions[0].loading
        assert len({a.message_id for a in interaction.actions[:4]}) == 1
        assert interaction.rejected == []

        click = await discord_standin.send_component(final, "echo:again")
        await click.wait_for_callback()
        clicked_note = await click.wait_for(lambda a: a.kind == "followup")
        assert clicked_note.ephemeral
        assert (
            click.callback is not None
            and click.callback.callback_type == CallbackType.DEFERRED_UPDATE_MESSAGE
        )
        assert bot.seen.clicks[0] == ("echo:again", world.member.id)

        with pytest.raises(ValueError, match="no component 'nope'"):
            await discord_standin.send_component(final, "nope")

        done = await discord_standin.send_component(interaction, "echo:done")
        updated = await done.wait_for_callback()
        assert updated.callback_type == CallbackType.UPDATE_MESSAGE
        assert updated.message_id == final.message_id
        assert updated.content == "Done." and updated.components == []
        # The image stays: an edit without `attachments` keeps them.
        assert [a["filename"] for a in updated.attachments] == ["echo.png"]
        with pytest.raises(ValueError, match="no component 'echo:again'"):
            await discord_standin.send_component(final, "echo:again")
    await assert_no_leaked_tasks(before)


async def test_followups_edits_fetch_and_delete(discord_standin: StandIn, world: World) -> None:
    bot = EchoBot()
    async with running_client(bot, discord_standin):
        interaction = await discord_standin.send_slash_command("lifecycle", user=world.member)
        deleted = await interaction.wait_for(lambda a: a.kind == "delete_message")
        first, extra = interaction.followups
        # Discord turns the "thinking…" message into the first follow-up, ephemeral like the defer
        # whatever the follow-up asked for; later follow-ups are new messages with their own flags.
        assert first.message_id == interaction.original_message_id and first.ephemeral
        assert extra.message_id != first.message_id and not extra.ephemeral
        edit = next(a for a in interaction.actions if a.kind == "edit_message")
        assert edit.message_id == extra.message_id and edit.content == "extra, edited"
        assert deleted.message_id == interaction.original_message_id
        assert discord_standin.message(first.message_id or 0).deleted

        card = await discord_standin.send_slash_command("card", user=world.member)
        reply = await card.wait_for_callback()
        assert reply.file.data == b"%PDF-1.4" and reply.file.content_type == "application/pdf"
    assert bot.seen.fetched == ["first"]


async def test_guild_synced_command_reaches_the_guild_tree(discord_standin: StandIn, world: World) -> None:
    bot = EchoBot(sync_guild=world.guild.id)
    async with running_client(bot, discord_standin):
        assert discord_standin.synced_commands() == []
        assert {c["name"] for c in discord_standin.synced_commands(world.guild)} >= {"ping", "style"}
        interaction = await discord_standin.send_slash_command("ping", user=world.member)
        assert interaction.data["guild_id"] == str(world.guild.id)
        assert (await interaction.wait_for_callback()).content == "pong"
        # Guild commands do not exist in DMs.
        with pytest.raises(LookupError, match="no command 'ping'"):
            await discord_standin.send_slash_command("ping", user=world.dm_user)


async def test_subcommand_group_autocomplete_context_menu_and_modal(
    discord_standin: StandIn, world: World
) -> None:
    bot = EchoBot()
    async with running_client(bot, discord_standin):
        typed = await discord_standin.send_autocomplete(
            "style preset set", {"name": "s"}, focused="name", user=world.admin
        )
        assert await typed.wait_for_choices() == [
            {"name": "Simpsons", "value": "simpsons"},
            {"name": "Sketch", "value": "sketch"},
        ]

        chosen = await discord_standin.send_slash_command(
            "style preset set", {"name": "sketch", "strength": 0.5}, user=world.admin
        )
        reply = await chosen.wait_for_callback()
        assert reply.content == "style=sketch strength=0.5" and reply.ephemeral
        (option,) = chosen.data["options"]
        assert (option["type"], option["name"], option["options"][0]["type"]) == (2, "preset", 1)

        # default_permissions=manage_guild hides the group from members without it.
        with pytest.raises(PermissionError, match="needs permissions"):
            await discord_standin.send_slash_command(
                "style preset set", {"name": "sketch"}, user=world.member
            )
        with pytest.raises(ValueError, match="requires option"):
            await discord_standin.send_slash_command("style preset set", {"strength": 1.0}, user=world.admin)

        menu = await discord_standin.send_user_command("Make their portrait", world.member, user=world.admin)
        assert (await menu.wait_for_callback()).content == f"portrait of {world.member.user.username}"

        opened = await discord_standin.send_slash_command("style describe", user=world.admin)
        modal = await opened.wait_for_callback()
        assert modal.callback_type == CallbackType.MODAL and modal.modal["title"] == "Describe the style"
        submitted = await discord_standin.send_modal_submit(modal, {"style:prompt": "thick ink lines"})
        assert (await submitted.wait_for_callback()).content == "Saved 'thick ink lines'"
    assert bot.seen.modal_values == ["thick ink lines"]
    assert bot.seen.errors == []


async def test_avatar_download_goes_to_the_stand_in_cdn(discord_standin: StandIn, world: World) -> None:
    avatar = png_bytes((32, 32), (10, 200, 10))
    discord_standin.set_avatar(world.member.user, avatar)
    bot = EchoBot()
    async with running_client(bot, discord_standin):
        with_avatar = await discord_standin.send_slash_command("avatar-size", user=world.member)
        assert (await with_avatar.wait_for_callback()).content == f"{len(avatar)} bytes"
        # Without an avatar discord.py falls back to Discord's default avatar, which the CDN serves too.
        default = await discord_standin.send_slash_command("avatar-size", user=world.admin)
        assert (await default.wait_for_callback()).content.endswith(" bytes")


async def test_late_acknowledgement_is_refused_like_discord() -> None:
    async with StandIn(callback_deadline_s=0.2) as standin:
        guild = standin.add_guild("Slow Club")
        member = standin.add_member(guild, standin.add_user("dee"))
        bot = EchoBot()
        async with running_client(bot, standin):
            interaction = await standin.send_slash_command("slow", user=member)
            for _ in range(100):
                if interaction.rejected:
                    break
                await asyncio.sleep(0.02)
            (rejected,) = interaction.rejected
            assert rejected.status == 404 and rejected.error["code"] == 10062
            assert interaction.actions == []
            with pytest.raises(TimeoutError, match="The bot did nothing"):
                await interaction.wait_for_callback(timeout=0.1)
        assert [type(e) for e in bot.seen.errors] == [discord.NotFound]


async def test_unknown_routes_are_recorded(discord_standin: StandIn, world: World) -> None:
    bot = EchoBot()
    async with running_client(bot, discord_standin):
        with pytest.raises(discord.NotFound):
            await bot.fetch_guild(world.guild.id)
    assert discord_standin.unknown_routes == [("GET", f"/api/v10/guilds/{world.guild.id}")]


async def test_wrong_token_fails_login_cleanly(discord_standin: StandIn) -> None:
    before = set(pending_tasks())
    bot = EchoBot()
    with pytest.raises(discord.LoginFailure):
        async with running_client(bot, discord_standin, token="MTE.wrong.token"):
            pass
    await assert_no_leaked_tasks(before)


@pytest.mark.parametrize("how", ["reconnect_op", "dropped_socket"])
async def test_resume_keeps_the_session_and_replays_missed_events(how: str) -> None:
    # Point READY's resume URL somewhere dead: the client must resume at the configured gateway.
    async with StandIn(resume_gateway_url="ws://127.0.0.1:9/") as standin:
        guild = standin.add_guild("Resume Club")
        member = standin.add_member(guild, standin.add_user("eve"))
        bot = EchoBot()
        async with running_client(bot, standin):
            (session,) = standin.gateway.sessions.values()
            if how == "reconnect_op":
                await standin.request_reconnect()
            else:
                await standin.drop_connections(code=4000)
            # Sent while the client is away; the RESUME replays it.
            interaction = await standin.send_slash_command("ping", user=member)
            assert (await interaction.wait_for_callback(timeout=10)).content == "pong"
            assert session.resumes == 1 and list(standin.gateway.sessions) == [session.session_id]
            assert len(standin.gateway.connections) == 2
        assert not standin.server_errors


async def test_auto_sharded_client_gets_each_guild_on_its_shard() -> None:
    async with StandIn(shard_count=2) as standin:
        guilds = [standin.add_guild(f"Club {n}") for n in range(6)]
        members = [standin.add_member(g, standin.add_user(f"user{n}")) for n, g in enumerate(guilds)]
        answered: list[tuple[int | None, int | None]] = []

        class Sharded(discord.AutoShardedClient):
            async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
                # discord.py sleeps 5 s before every IDENTIFY but the first (Discord's identify limit).
                pass

        bot = Sharded(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        tree = discord.app_commands.CommandTree(bot)

        @tree.command(name="shard", description="Which shard am I on?")
        async def shard(interaction: discord.Interaction) -> None:
            answered.append((interaction.guild_id, interaction.guild.shard_id if interaction.guild else None))
            await interaction.response.send_message("ok")

        async with running_client(bot, standin):
            await tree.sync()
            assert sorted(s.shard for s in standin.gateway.sessions.values()) == [(0, 2), (1, 2)]
            assert {g.id for g in bot.guilds} == {g.id for g in guilds}
            for member in members:
                interaction = await standin.send_slash_command("shard", user=member)
                await interaction.wait_for_callback()
        assert answered == [(g.id, (g.id >> 22) % 2) for g in guilds]


async def test_an_over_long_custom_id_refuses_the_whole_message_like_discord(
    discord_standin: StandIn, world: World
) -> None:
    """Discord refuses a message with one component id over 100 characters, and no part of it appears."""
    client = EchoBot()
    channel_id = world.guild.text_channels[0].id
    async with running_client(client, discord_standin):
        channel = client.get_partial_messageable(channel_id)
        fits = discord.ui.View()
        fits.add_item(discord.ui.Button(label="Fits", custom_id="x" * 100))
        assert (await channel.send("fits", view=fits)).components

        over = discord.ui.View()
        over.add_item(discord.ui.Button(label="Fits", custom_id="ok"))
        over.add_item(discord.ui.Button(label="Too long", custom_id="x" * 101))
        with pytest.raises(discord.HTTPException) as refused:
            await channel.send("too long", view=over)
        assert (refused.value.status, refused.value.code) == (400, 50035)
        errors = refused.value.text
        assert "components.0.components.1.custom_id" in errors and "Must be 100 or fewer in length." in errors
        assert [m.content for m in discord_standin.public_messages()] == ["fits"]

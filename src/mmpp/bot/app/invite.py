"""Checking the token with Discord before anything slow starts, and the invite URL the bot prints.

A wrong token used to surface only after the models loaded (minutes, or a 15 GB download on a first
start). `check_token` asks Discord `GET /users/@me` through the configured API base first, with
discord.py's own HTTP client, and fetches the application id for the invite URL. `mmpp invite` is the
same check alone: it prints the link without starting the bot or loading a model.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import TextIO

import aiohttp
import discord
import yarl

from mmpp.errors import UserFacingError
from mmpp.settings import Settings

# The only scopes the bot needs: a bot user, and slash commands.
INVITE_SCOPES = ("bot", "applications.commands")


def needed_permissions() -> discord.Permissions:
    """What the bot does outside its interaction replies (which need no permission): when a reply can no
    longer be edited, it posts the portrait in the channel (or a thread) with a mention, as an embed with
    the image attached."""
    return discord.Permissions(
        view_channel=True,
        send_messages=True,
        send_messages_in_threads=True,
        embed_links=True,
        attach_files=True,
    )


class TokenRejected(UserFacingError):
    code = "start_failed"


def read_token(settings: Settings) -> str:
    """DISCORD_TOKEN, or one line saying where to get it."""
    secret = settings.discord_token
    token = secret.get_secret_value().strip() if secret is not None else ""
    if not token:
        # Which file was read, resolved: a service started in another directory reads another bot.env.
        raise TokenRejected(
            f"DISCORD_TOKEN is not set (read {settings.env_file_words()}). Get your bot's "
            "token at https://discord.com/developers/applications (your app > Bot > Reset Token) and put it in "
            f"{settings.env_file_name} or the environment."
        )
    return token


@dataclass(frozen=True)
class BotIdentity:
    user: str
    application_id: int

    @property
    def invite_url(self) -> str:
        return discord.utils.oauth_url(self.application_id, permissions=needed_permissions(), scopes=INVITE_SCOPES)

    @property
    def user_install_url(self) -> str:
        return user_install_url(self.application_id)


def user_install_url(application_id: int) -> str:
    """The link a member uses to add /profile to their own account, usable in any server or DM.
    Discord's user install (`integration_type=1`) takes only the commands scope: no bot user, no permissions."""
    return discord.utils.oauth_url(application_id, scopes=("applications.commands",)) + "&integration_type=1"


def unreachable(exc: BaseException) -> str:
    """The one line for a Discord that cannot be reached, at start-up's token check and first connection alike."""
    where = yarl.URL(discord.http.Route.BASE).host
    return f"Cannot reach Discord at {where} ({exc.__class__.__name__}). Check the network or DISCORD_API_BASE."


async def check_token(token: str) -> BotIdentity:
    """Log in over REST only (no gateway); raises one clear line when Discord says no or cannot be reached."""
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        me = await http.static_login(token)
        app = await http.application_info()
    except discord.LoginFailure:
        raise TokenRejected(
            "Discord refused the token. Copy it again from https://discord.com/developers/applications "
            "(your app > Bot > Reset Token) into DISCORD_TOKEN in bot.env."
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise TokenRejected(unreachable(exc)) from None
    except discord.HTTPException as exc:
        raise TokenRejected(f"Discord answered {exc.status} while checking the token: {exc.text}") from None
    finally:
        await http.close()
    name = me.get("username", "?")
    return BotIdentity(user=name, application_id=int(app.get("id") or me["id"]))


def print_invite(identity: BotIdentity, out: TextIO | None = None) -> None:
    """The link on a line of its own, so a terminal makes it clickable and a person can copy it whole."""
    out = out or sys.stderr
    print(f"Invite {identity.user} to a server with this link:", file=out)
    print(identity.invite_url, file=out)
    print("Or add its commands to your own account (any server, any DM) with this one:", file=out)
    print(identity.user_install_url, file=out, flush=True)

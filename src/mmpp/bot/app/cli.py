"""`mmpp bot`: run the Discord bot."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    bot = subparsers.add_parser(
        "bot", help="run the Discord bot", description="Run the Discord bot: reads its env file (bot.env), "
        "migrates the database, loads the models and styles, syncs the slash commands, and connects. Ctrl-C stops "
        "it gracefully."
    )
    bot.add_argument("--model-dir", type=Path, default=None, help="models and styles from a `make-tiny-model` folder")
    bot.add_argument("--database-url", default=None, help="override DATABASE_URL")
    bot.add_argument("--device", default=None, help="auto, cpu, mps, cuda or cuda:N (default: DEVICE, which is auto)")
    bot.set_defaults(func=run)

    invite = subparsers.add_parser(
        "invite", help="print the link that adds the bot to a server",
        description="Check DISCORD_TOKEN with Discord and print the invite link (the bot and "
        "applications.commands scopes, just the permissions the bot uses). Starts nothing, loads no model.",
    )
    invite.set_defaults(func=run_invite)


def run(args: argparse.Namespace) -> int:
    from mmpp.memory import limit_arenas

    limit_arenas()  # first, before any thread exists: a long-running process's RSS stays flat
    from mmpp.bot.app.runtime import run_bot
    from mmpp.logs import configure_logging
    from mmpp.settings import load_settings

    settings = load_settings(
        args.env_file, model_dir=args.model_dir, database_url=args.database_url, device=args.device
    )
    configure_logging(args.log_level or settings.log_level, settings.log_format)
    return asyncio.run(run_bot(settings))


def run_invite(args: argparse.Namespace) -> int:
    import sys

    from mmpp.bot.app.discord_endpoints import apply_endpoints
    from mmpp.bot.app.invite import TokenRejected, check_token, read_token
    from mmpp.logs import register_secret
    from mmpp.settings import load_settings

    settings = load_settings(args.env_file)
    token = read_token(settings)
    register_secret(token)
    # DISCORD_API_BASE as for the bot: a REST proxy, or the tests' stand-in.
    try:
        apply_endpoints(settings.discord_api_base, settings.discord_gateway_url, cdn_base=settings.discord_cdn_base)
    except ValueError as exc:
        raise TokenRejected(f"{exc}. Fix it in {settings.env_file_name}.") from None

    async def ask() -> None:
        identity = await check_token(token)
        # Only the links on stdout, the server invite first: `mmpp invite | head -1 | xclip` works.
        print(identity.invite_url, file=sys.stdout)
        print(identity.user_install_url, file=sys.stdout)

    asyncio.run(ask())
    return 0

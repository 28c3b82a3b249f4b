"""The `mmpp` command. Each feature folder registers its own subcommands.

A subcommand module exposes `register(subparsers)` and keeps heavy imports (torch, diffusers,
discord) inside the handler, so `mmpp --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from mmpp import __version__
from mmpp.errors import UserFacingError
from mmpp.logs import configure_logging

# Modules that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES = (
    "mmpp.bot.app.cli",
    "mmpp.inference.cli",
    "mmpp.inference.testing.random_cli",
    "mmpp.inference.download",
    "mmpp.training.cli",
    "mmpp.bot.db.cli",
    "mmpp.inference.worker_cli",
    "mmpp.health_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmpp", description="Make My Profile Photo: selfies in, styled profile photos out."
    )
    parser.add_argument("--version", action="version", version=f"mmpp {__version__}")
    parser.add_argument(
        "--env-file", default=None,
        help="settings file (default: $MMPP_ENV_FILE, else bot.env in the current directory)",
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Library import-time chatter (e.g. "torchvision not installed") means nothing to an operator.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    # bitsandbytes (the `train` extra) warns at import, through logging's last-resort handler, about an
    # optional CPU kernel package; every command would print it before its own first line.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging(args.log_level)
    return run_command(args, "mmpp")


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Runs the parsed subcommand; a mistake is one line on stderr (shared with `python -m mmpp.training`)."""
    from mmpp.settings import resolve_env_file

    # One answer for every subcommand and entry point: they all read `args.env_file`.
    args.env_file = resolve_env_file(args.env_file)
    try:
        return int(args.func(args) or 0)
    except UserFacingError as exc:
        # Worded from the bot's catalogue, in English: an engine error reads as a member would read it.
        from mmpp.bot.words.errors import describe

        print(f"{prog}: {describe(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

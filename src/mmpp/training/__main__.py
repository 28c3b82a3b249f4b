"""`python -m mmpp.training ...` (and `accelerate launch -m mmpp.training ...`): the training subcommands alone."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mmpp.cli import run_command
from mmpp.logs import configure_logging
from mmpp.training.cli import register


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmpp.training", description="MMPP style training.")
    parser.add_argument(
        "--env-file", default=None,
        help="settings file (default: $MMPP_ENV_FILE, else bot.env in the current directory)",
    )
    parser.add_argument("--log-level", default=None)
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    return run_command(args, parser.prog)


if __name__ == "__main__":
    raise SystemExit(main())

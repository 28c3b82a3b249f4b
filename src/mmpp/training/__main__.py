"""`python -m training ...` (and `accelerate launch -m training ...`): the training subcommands alone."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mmpp.errors import UserFacingError
from mmpp.logs import configure_logging
from mmpp.settings import resolve_env_file
from mmpp.training.cli import register


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description="MMPP style training.")
    parser.add_argument(
        "--env-file", default=None,
        help="settings file (default: $MMPP_ENV_FILE, else bot.env in the current directory)",
    )
    parser.add_argument("--log-level", default=None)
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    args.env_file = resolve_env_file(args.env_file)
    try:
        return int(args.func(args) or 0)
    except UserFacingError as exc:
        from mmpp.bot.words.errors import describe  # an engine error (a code) in English, as `mmpp` words it

        print(f"{parser.prog}: {describe(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

"""Passwords and Discord tokens stay out of logs, reprs and error messages."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from mmpp.cli import main
from mmpp.logs import configure_logging
from mmpp.settings import load_settings
from tests.bot.conftest import World
from tests.bot.test_profile import profile

PASSWORD = "s3cret-Pa55word"


def test_settings_never_show_the_database_password() -> None:
    settings = load_settings(None, database_url=f"postgresql+asyncpg://mmpp:{PASSWORD}@db.internal/mmpp")
    for text in (repr(settings), str(settings)):
        assert PASSWORD not in text and "postgresql+asyncpg://mmpp:***@db.internal/mmpp" in text


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+asyncpg://mmpp:{PASSWORD}@db.internal:port/mmpp",  # a port that is not a number
        f"postgresql+asyncpg//mmpp:{PASSWORD}@db.internal/mmpp",  # the colon after the scheme forgotten
    ],
)
def test_a_malformed_database_url_is_reported_without_its_password(
    url: str, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "current", "--database-url", url]) == 1
    err = capsys.readouterr().err
    assert "is not a database URL" in err and "mmpp:***@db.internal" in err
    assert PASSWORD not in err and "Traceback" not in err


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """A test may configure logging as `mmpp` does; pytest's own handlers come back after it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    # ...and the levels it gives library loggers (mmpp.logs.LIBRARY_FLOORS), which later tests may read.
    levels = {name: logger.level for name, logger in logging.root.manager.loggerDict.items()
              if isinstance(logger, logging.Logger)}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


async def test_debug_logs_carry_no_interaction_tokens(
    world: World, selfie_bytes: bytes, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG", "text")  # here, not in a fixture: the stderr of this phase is captured
    interaction = await profile(world, world.members[0], selfie_bytes)
    await interaction.wait_for_final_file(timeout=60)
    err = capsys.readouterr().err
    # discord.py logged the callback and the edits (so this test would see a leak)...
    assert re.search(rf"/interactions/{interaction.id}/\*\*\*/callback", err)
    assert re.search(r"/webhooks/\d+/\*\*\*/messages/@original", err)
    # ...and never the token that can edit the bot's replies.
    assert interaction.token not in err
    assert interaction.token[:24] not in err


def test_a_log_line_that_cannot_be_written_is_reported_scrubbed(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG", "text")
    logging.getLogger().handlers[0].setStream(_Unwritable())  # a closed pipe, a full disk
    token = "aW50ZXJhY3Rpb246" + "x" * 40
    logging.getLogger("discord.webhook.async_").debug(
        "%s %s has returned %s", "POST", f"/interactions/1/{token}/callback", 200
    )
    err = capsys.readouterr().err
    assert "Logging error" in err and "/interactions/1/***/callback" in err and token not in err


class _Unwritable(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("no space left on device")

"""`mmpp db ...` as an operator runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmpp.bot.db.migrate import head_revision
from mmpp.cli import main


def _db(url: str, *args: str) -> int:
    return main(["--env-file", "/nonexistent/bot.env", "db", "--database-url", url, *args])


def test_upgrade_current_downgrade(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    head = head_revision()

    assert _db(database_url, "current") == 0
    assert capsys.readouterr().out.startswith("empty")

    assert _db(database_url, "upgrade") == 0
    assert capsys.readouterr().out.strip() == f"migrated base (empty) -> {head}"

    assert _db(database_url, "current") == 0
    assert capsys.readouterr().out.strip() == f"{head} (head)"

    assert _db(database_url, "upgrade") == 0
    assert capsys.readouterr().out.strip() == f"already at {head}"

    assert _db(database_url, "downgrade", "base") == 0
    assert capsys.readouterr().out.strip() == f"migrated {head} -> base (empty)"

    assert _db(database_url, "current") == 0
    assert capsys.readouterr().out.startswith("empty")


def test_database_url_comes_from_settings_and_works_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "state" / "bot.sqlite3"
    env_file = tmp_path / "bot.env"
    env_file.write_text(f"DATABASE_URL=sqlite:///{target}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("DATABASE_URL", raising=False)

    # The option may also follow the action.
    assert main(["--env-file", str(env_file), "db", "upgrade"]) == 0
    assert target.is_file()
    assert main(["--env-file", str(env_file), "db", "current"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{head_revision()} (head)")
    assert main(["db", "current", "--database-url", f"sqlite:///{target}"]) == 0
    assert capsys.readouterr().out.strip() == f"{head_revision()} (head)"
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+asyncpg://postgres@127.0.0.1:1/mmpp", "mmpp: Cannot reach the database at postgresql"),
        ("mysql://root@localhost/mmpp", "mmpp: MMPP supports SQLite and PostgreSQL"),
        ("not a url", "mmpp: 'not a url' is not a database URL"),
    ],
)
def test_unreachable_or_wrong_database_is_one_clear_line(
    url: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _db(url, "upgrade") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), captured.err
    assert "Traceback" not in captured.err


def test_unknown_revision_is_one_clear_line(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _db(sqlite_url, "downgrade", "nonsense") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mmpp: Cannot migrate to 'nonsense': Can't locate revision identified by 'nonsense'"]


def test_registering_mmpp_db_does_not_load_the_database_stack() -> None:
    # `mmpp --help` imports every command module; ours must not make it pay for SQLAlchemy.
    probe = (
        "import argparse, sys, mmpp.bot.db.cli; "
        "mmpp.bot.db.cli.register(argparse.ArgumentParser().add_subparsers()); "
        "print(sorted({'sqlalchemy', 'alembic'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

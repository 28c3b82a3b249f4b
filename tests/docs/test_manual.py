"""The operator's manual: generated where it can be, checked against the code where it cannot, built
strictly, and its runnable commands run as written."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from discord import app_commands
from discord.ext import commands
from pydantic import Field

import mmpp.settings_doc as settings_doc
from mmpp.cli import build_parser
from mmpp.settings import Settings
from tests.docs.manual import DOCS, README, REPO, pages, runnable_blocks, runnable_groups
from tests.docs.start_errors import start_error_texts

# Paths a page names that look like a slash command: the metrics server's, and a folder.
NOT_COMMANDS = {"healthz", "readyz", "metrics", "tmp"}


def test_the_settings_files_are_what_the_generator_writes() -> None:
    """bot.env.example and docs/configuration.md: `python -m mmpp.settings_doc` made them as they are."""
    assert settings_doc.main(["--check"]) == 0, "run python -m mmpp.settings_doc"


def test_the_generator_rewrites_a_stale_file(tmp_path: Path) -> None:
    (tmp_path / "bot.env.example").write_text("DISCORD_TOKEN=\n")
    assert settings_doc.main(["--check", "--root", str(tmp_path)]) == 1
    assert settings_doc.main(["--root", str(tmp_path)]) == 0
    assert (tmp_path / "bot.env.example").read_text() == (REPO / "bot.env.example").read_text()
    assert (tmp_path / "docs" / "configuration.md").read_text() == (DOCS / "configuration.md").read_text()


def test_a_setting_without_its_entry_fails(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    class Grown(Settings):
        operator_ceiling: int = Field(default=3, description="A setting someone added.")

    monkeypatch.setattr(settings_doc, "Settings", Grown)
    assert settings_doc.main(["--check"]) == 1
    assert "settings without an entry: OPERATOR_CEILING" in capsys.readouterr().err


def test_every_setting_is_in_the_reference_with_its_default() -> None:
    reference = (DOCS / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"**`{name.upper()}`**" in reference


def _slash_commands() -> dict[str, set[str]]:
    """Every slash command the bot registers, with a group's subcommands, read from the cogs."""
    import importlib
    import pkgutil

    import mmpp.bot.cogs as cogs

    found: dict[str, set[str]] = {}
    for module in pkgutil.iter_modules(cogs.__path__):
        for value in vars(importlib.import_module(f"mmpp.bot.cogs.{module.name}")).values():
            if not (isinstance(value, type) and issubclass(value, commands.Cog)) or value in (
                    commands.Cog, commands.GroupCog):
                continue
            names = {str(c.name) for c in value.__cog_app_commands__ if isinstance(c, app_commands.Command)}
            if value.__cog_is_app_commands_group__:
                found[str(value.__cog_group_name__)] = names
            else:
                found.update({name: set() for name in names})
    return found


def _mmpp_commands() -> dict[str, set[str]]:
    def choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    return {name: set(choices(sub)) for name, sub in choices(build_parser()).items()}


def _texts() -> list[Path]:
    # The changelog names commands that are gone on purpose (what a release removed).
    return [README, REPO / "bot.env.example", *sorted(DOCS.glob("*.md"))]


def wrong_commands(text: str) -> list[str]:
    """The `/command [sub]` and `mmpp command [sub]` a text names that the bot or the CLI does not have."""
    slash, mmpp = _slash_commands(), _mmpp_commands()
    wrong = []
    for match in re.finditer(r"(?<![\w/.:<>)`-])/([a-z][a-z-]*)(?![\w/.-])(?:[ ]+([a-z][a-z_]*)(?![\w:=/-]))?", text):
        name, sub = match.groups()
        if name not in NOT_COMMANDS and (name not in slash or (slash[name] and sub and sub not in slash[name])):
            wrong.append(match.group(0))
    for match in re.finditer(r"(?<![\w./-])mmpp ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", text):
        name, sub = match.groups()
        if name not in mmpp or (mmpp[name] and sub and sub not in mmpp[name]):
            wrong.append(match.group(0))
    return wrong


def test_every_command_the_manual_names_exists() -> None:
    assert {"profile", "style", "styles"} <= set(_slash_commands()) and "models" in _mmpp_commands()
    wrong = {path.name: wrong_commands(path.read_text(encoding="utf-8")) for path in _texts()}
    assert {name: found for name, found in wrong.items() if found} == {}


def test_the_command_check_catches_commands_that_do_not_exist() -> None:
    # bot.env.example once told admins to relax the safety check "with /style nsfw".
    text = "Admins may relax it in channels Discord marks NSFW with /style nsfw. Or `/styles`, /healthz, " \
           "/var/lib/mmpp, `mmpp models fetch`, ./run mmpp invite, `mmpp frobnicate --x`."
    assert wrong_commands(text) == ["/style nsfw", "mmpp models fetch", "mmpp frobnicate"]


def test_every_start_error_is_in_troubleshooting() -> None:
    page = " ".join((DOCS / "troubleshooting.md").read_text(encoding="utf-8").split())
    texts = start_error_texts()
    assert len(texts) > 30  # the reader finds the raises
    assert {where: text for where, text in texts.items() if text not in page} == {}


def test_every_page_is_in_the_nav() -> None:
    assert sorted(pages()) == sorted(DOCS.glob("*.md"))


def test_the_manual_builds_strictly(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run([str(mkdocs), "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "troubleshooting" / "index.html").is_file()


@pytest.mark.parametrize("group", sorted(runnable_groups() - {"quick-start"}))
def test_runnable_commands_run_as_written(group: str, tmp_path: Path) -> None:
    """Each group in a fresh folder, with this run's `mmpp` first on PATH and no bot settings."""
    if group == "backup" and shutil.which("sqlite3") is None:
        pytest.fail("the sqlite3 shell is missing (Debian: apt-get install sqlite3)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "DATABASE_", "MMPP_", "DATA_DIR"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    lines = [line for _, block in runnable_blocks(group) for line in block]
    assert lines
    for line in lines:
        done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (line, done.stderr[-3000:])
        if "integrity_check" in line:
            assert done.stdout.strip() == "ok"


def test_the_settings_words_name_only_settings() -> None:
    """A NAME_LIKE_THIS in bot.env.example's prose is a setting, or one of the few variables read outside it."""
    read_elsewhere = {"MMPP_ENV_FILE", "HF_HOME", "HF_HUB_OFFLINE"}  # the env file's own name; the hub client's
    named = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", (REPO / "bot.env.example").read_text()))
    assert sorted(named - {name.upper() for name in Settings.model_fields} - read_elsewhere) == []

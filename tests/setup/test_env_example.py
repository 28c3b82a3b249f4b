"""bot.env.example is the operator's list of settings: it names every setting the bot reads, no
setting the bot ignores, and every value in it loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmpp.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "bot.env.example"


def example_keys() -> set[str]:
    # Commented-out lines (`# KEY=value`) count: they document an optional setting.
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), re.MULTILINE))


def test_the_example_names_every_setting_and_nothing_else() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    assert sorted(fields - example_keys()) == [], "settings missing from bot.env.example"
    assert sorted(example_keys() - fields) == [], "bot.env.example names settings the bot does not read"


def test_the_example_loads_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in example_keys():
        monkeypatch.delenv(key, raising=False)
    settings = load_settings(EXAMPLE)
    assert settings.max_concurrent_downloads == 8 and settings.reroll_cache_mb == 256

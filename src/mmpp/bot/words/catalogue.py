"""The gettext catalogues (`bot/words/locales/<lang>.po`) by language code, without Discord: what both
the bot (`i18n`, which picks the member's language) and the CLI (English) read sentences through.

English is the source: each message id *is* its English text, so English needs no catalogue and a
missing translation shows English, never a key. Babel is imported only when a catalogue is read.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

LOCALES_DIR = Path(__file__).with_name("locales")
SOURCE_LANGUAGE = "en"
# Commands a sentence may name, each as `{<name>_command}`: filled with the name the member's command
# menu shows (`/프로필` for a Korean member). Discord draws a `</name:id>` mention with the default
# name whatever the client's language, so the localized name goes in as plain text.
NAMED_COMMANDS = ("profile", "styles")


@cache
def catalogue(language: str) -> dict[tuple[str | None, str], str]:
    """(context, English) → translation, from `bot/words/locales/<language>.po`; empty translations left out."""
    from babel.messages.pofile import read_po

    with (LOCALES_DIR / f"{language}.po").open("rb") as file:
        po = read_po(file, locale=language)
    return {
        (message.context, str(message.id)): str(message.string)
        for message in po
        if message.id and message.string and not message.fuzzy
    }


@cache
def languages() -> tuple[str, ...]:
    """English plus one language per catalogue file."""
    return (SOURCE_LANGUAGE, *sorted(p.stem for p in LOCALES_DIR.glob("*.po")))


def command_name(language: str, name: str) -> str:
    """`/name` as the member's command menu shows it in `language`."""
    known = language in languages() and language != SOURCE_LANGUAGE
    return "/" + (catalogue(language).get(("name", name), name) if known else name)


def translate(language: str, msgid: str, /, **params: object) -> str:
    """`msgid` in `language` (a code we have a catalogue for, else English), fields filled in; a
    `{profile_command}` field is the command's localized name."""
    known = language in languages() and language != SOURCE_LANGUAGE
    text = catalogue(language).get((None, msgid), msgid) if known else msgid
    commands = {f"{name}_command": command_name(language, name) for name in NAMED_COMMANDS
                if f"{{{name}_command}}" in text}
    return text.format(**commands, **params) if params or commands else text

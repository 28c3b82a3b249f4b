"""The gettext catalogues (`bot/words/locales/<lang>.po`) by language code, without Discord: what both
the bot (`i18n`, which picks the member's language) and the CLI (English) read sentences through.

English is the source: each message id *is* its English text, so English needs no catalogue and a
missing translation shows English, never a key. Babel is imported only when a catalogue is read.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from mmpp.errors import Fields

LOCALES_DIR = Path(__file__).with_name("locales")
SOURCE_LANGUAGE = "en"


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
    """`msgid` in `language` (a code we have a catalogue for, else English), fields filled in. Any
    `{<name>_command}` field is the name the member's command menu shows (`/프로필` for a Korean
    member): Discord draws a `</name:id>` mention with the default name whatever the client's
    language, so the localized name goes in as plain text."""
    known = language in languages() and language != SOURCE_LANGUAGE
    text = catalogue(language).get((None, msgid), msgid) if known else msgid
    if not params and "_command}" not in text:
        return text
    return text.format_map(Fields(params, lambda name: command_name(language, name)))

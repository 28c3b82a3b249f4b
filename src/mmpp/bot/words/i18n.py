"""Every word a member reads, in their language: gettext catalogues (`bot/words/locales/<lang>.po`, read
with Babel), picked by the member's Discord language, then the server's, then English.

English is the source: each message id *is* its English text (with `{name}` fields filled by
`str.format`), so English needs no catalogue and a missing translation shows English, never a key.
A catalogue file per other language; adding `bot/words/locales/ja.po` adds Japanese (see the README).

Command, option and choice names and descriptions go through `CommandTranslator`
(discord.py's `app_commands.Translator`): names are looked up under the `name` context, since a
Korean command name must be one word (`msgctxt "name"`), descriptions and choices without one.
"""

from __future__ import annotations

import discord
from discord import app_commands

from mmpp.bot.words.catalogue import LOCALES_DIR, SOURCE_LANGUAGE, catalogue, languages, translate
from mmpp.bot.words.errors import describe
from mmpp.errors import N_

__all__ = [
    "LOCALES_DIR", "N_", "CommandTranslator", "catalogue", "language_of", "languages", "match", "name_str", "text_str",
    "tr", "tr_error",
]

NAME_CONTEXT = "name"


def match(locale: discord.Locale | str | None) -> str | None:
    """The language we speak for a Discord locale ("ko", "en-US", "zh-TW"), if any."""
    if locale is None:
        return None
    code = str(getattr(locale, "value", locale))
    known = languages()
    for candidate in (code, code.split("-")[0]):
        if candidate in known:
            return candidate
    return None


Where = discord.Interaction | str | None


def language_of(where: Where) -> str:
    """The member's own Discord language, else the server's, else English; a language code as given."""
    if isinstance(where, str):
        return where
    if where is None:
        return SOURCE_LANGUAGE
    return match(where.locale) or match(where.guild_locale) or SOURCE_LANGUAGE


def tr(where: Where, msgid: str, /, **params: object) -> str:
    """`msgid` in the language of `where` (an interaction, or a language code), fields filled in."""
    return translate(language_of(where), msgid, **params)


def tr_error(where: Where, error: object) -> str:
    """An error, or a queue event that ended a job (`Failed`, `Cancelled`), in the member's language:
    a coded one worded by its code and fields for a member (`words.errors`), a `UserFacingError` by its
    template."""
    return describe(error, language_of(where), member=True)


def name_str(name: str) -> app_commands.locale_str:
    """A command, group or option name, translated under the `name` context (one word)."""
    return app_commands.locale_str(name)


def text_str(text: str) -> app_commands.locale_str:
    """A description or choice name."""
    return app_commands.locale_str(text)


NAME_LOCATIONS = (
    app_commands.TranslationContextLocation.command_name,
    app_commands.TranslationContextLocation.group_name,
    app_commands.TranslationContextLocation.parameter_name,
)


class CommandTranslator(app_commands.Translator):
    """Names, descriptions and choices of every command, in each language we have a catalogue for."""

    async def translate(
        self, string: app_commands.locale_str, locale: discord.Locale, context: app_commands.TranslationContextTypes
    ) -> str | None:
        language = match(locale)
        if language is None or language == SOURCE_LANGUAGE:
            return None
        # A context menu's name may have spaces and capitals ("Make profile photo"): a description's rules.
        is_name = context.location in NAME_LOCATIONS and not isinstance(context.data, app_commands.ContextMenu)
        kind = NAME_CONTEXT if is_name else None
        return catalogue(language).get((kind, string.message))

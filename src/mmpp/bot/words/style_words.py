"""A style's title and description in the member's language. Inference keeps a style's texts as it
read them (one text, or a table by Discord locale, see `inference/style_definition.py`); the bot picks the one
for the member here, falling back to English, and an operator's style with one title shows that title."""

from __future__ import annotations

from mmpp.bot.words.catalogue import SOURCE_LANGUAGE
from mmpp.bot.words.i18n import Where, language_of
from mmpp.inference.style_definition import Localized, StyleDefinition


def pick(value: Localized, language: str) -> str:
    """The text for `language` ("ko", "pt-BR"): its own entry, else its base language's, else English."""
    if isinstance(value, str):
        return value
    return value.get(language) or value.get(language.split("-")[0]) or value.get(SOURCE_LANGUAGE, "")


def title_of(definition: StyleDefinition, where: Where) -> str:
    """The style's title as the member reads it; its English title (or its name, worded) where it has none."""
    return pick(definition.display_name, language_of(where)) or definition.title


def description_of(definition: StyleDefinition, where: Where) -> str:
    return pick(definition.description, language_of(where))

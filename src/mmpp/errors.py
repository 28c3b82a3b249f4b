"""The root of every error whose message is meant for a person, not a traceback."""

from __future__ import annotations


def N_(msgid: str) -> str:
    """Marks an English sentence as a message id of the bot's catalogues (`bot/words/locales/*.po`);
    returns it unchanged. The bot translates it where a member reads it (`mmpp.bot.words.i18n.tr`)."""
    return msgid


class UserFacingError(Exception):
    """An error with a one-sentence message a Discord member (or a CLI user) understands.

    `code` is a stable machine-readable reason, logged and stored in the generation log.
    `message` may be a template with `{fields}` given as keyword arguments: the bot translates the
    template (`mmpp.bot.words.i18n.tr_error`) and fills the same fields in the member's language.
    """

    code: str = "error"
    exit_code: int = 1

    def __init__(self, message: str, *, code: str | None = None, **params: object) -> None:
        formatted = message.format(**params) if params else message
        super().__init__(formatted)
        self.message = formatted
        self.template = message
        self.params = params
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

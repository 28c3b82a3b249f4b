"""The root of every error whose message is meant for a person, not a traceback."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol


def N_(msgid: str) -> str:
    """Marks an English sentence as a message id of the bot's catalogues (`bot/words/locales/*.po`);
    returns it unchanged. The bot translates it where a member reads it (`mmpp.bot.words.i18n.tr`)."""
    return msgid


def english_command(name: str) -> str:
    return "/" + name


class Fields(dict[str, object]):
    """A template's fields. Any `{<name>_command}` is filled by `command`: the command's English name
    by default (the log's and the CLI's reading), the member's own menu name where the bot words the
    template (`bot/words/catalogue.py`)."""

    def __init__(self, params: Mapping[str, object], command: Callable[[str], str] = english_command) -> None:
        super().__init__(params)
        self.command = command

    def __missing__(self, key: str) -> str:
        if key.endswith("_command"):
            return self.command(key.removesuffix("_command"))
        raise KeyError(key)


class UserFacingError(Exception):
    """An error with a one-sentence message a Discord member (or a CLI user) understands.

    `code` is a stable machine-readable reason, logged and stored in the generation log.
    `message` may be a template with `{fields}` given as keyword arguments: the bot translates the
    template (`mmpp.bot.words.i18n.tr_error`) and fills the same fields in the member's language.
    Inference raises `CodedError` instead: it does not choose words.
    """

    code: str = "error"
    exit_code: int = 1

    def __init__(self, message: str, *, code: str | None = None, **params: object) -> None:
        formatted = message.format_map(Fields(params)) if params or "_command}" in message else message
        super().__init__(formatted)
        self.message = formatted
        self.template: str | None = message
        self.params = params
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class Coded(Protocol):
    """Anything worded by its code: a `CodedError`, or a queue event such as `Failed`."""

    @property
    def code(self) -> str: ...

    @property
    def fields(self) -> Mapping[str, Any]: ...


class CodedError(UserFacingError):
    """A refusal raised where the words are not chosen (inference): a stable `code` and the `fields`
    its sentence needs (numbers, ids, seconds, names; never a sentence, never markup).

    The bot words it in the member's language, the CLI in English, both from one table
    (`mmpp.bot.words.errors`); `str()` is the code and fields, for logs and tracebacks. It pickles
    with its fields, so it crosses the decode processes' boundary as it was raised.
    """

    def __init__(self, **fields: Any) -> None:
        self.fields: dict[str, Any] = fields
        shown = ", ".join(f"{name}={value!r}" for name, value in fields.items())
        Exception.__init__(self, f"{self.code}({shown})")
        self.message = f"{self.code}({shown})"
        self.template = None
        self.params = fields

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), dict(self.fields))


def _rebuild(cls: type[CodedError], fields: dict[str, Any]) -> CodedError:
    error = cls.__new__(cls)
    CodedError.__init__(error, **fields)
    return error

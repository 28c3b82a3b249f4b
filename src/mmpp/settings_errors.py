"""A setting that does not parse, in one line an operator can act on (`SettingsError`, `describe_error`):
the setting as it is spelled in bot.env, its value, and what it expects."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from mmpp.errors import UserFacingError


class SettingsError(UserFacingError):
    code = "bad_setting"


# What a value of each kind looks like, in words an operator editing bot.env understands.
_EXPECTED = {
    "int_parsing": "a whole number, like 100",
    "int_from_float": "a whole number, like 100",
    "float_parsing": "a number, like 1.5",
    "bool_parsing": "true or false",
    "path_type": "a folder or file path",
}


def describe_error(error: ValidationError, env_file: Path | str | None) -> str:
    """One line naming the first bad setting as it is spelled in bot.env, and what it expects."""
    first = error.errors()[0]
    name = str(first["loc"][0]).upper() if first["loc"] else "(settings)"
    kind = first["type"]
    context = first.get("ctx") or {}
    if kind in _EXPECTED:
        expected = _EXPECTED[kind]
    elif kind == "literal_error":
        expected = "one of " + str(context.get("expected", "")).replace("'", "")
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {"greater_than_equal": "at least", "greater_than": "more than",
                 "less_than_equal": "at most", "less_than": "less than"}[kind]
        expected = f"a number {words} {next(iter(context.values()), '')}"
    else:
        expected = str(first["msg"]).removeprefix("Value error, ")
    where = f"{env_file} or the environment" if env_file else "the environment"
    value = first.get("input")
    shown = f" is {str(value)!r}" if isinstance(value, str | int | float) and len(str(value)) <= 60 else " is wrong"
    return f"Setting {name} ({where}){shown}: expected {expected}."

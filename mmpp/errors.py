"""The root of every error whose message is meant for a person, not a traceback."""

from __future__ import annotations


class UserFacingError(Exception):
    """An error with a one-sentence message a Discord member (or a CLI user) understands.

    `code` is a stable machine-readable reason, logged and stored in the generation log.
    """

    code: str = "error"
    exit_code: int = 1

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

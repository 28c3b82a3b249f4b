"""Structured logging: `event key=value ...` lines, or JSON, with secrets scrubbed.

Log calls pass fields through `extra={"fields": {...}}` (see `log_event`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Any

_SECRETS: set[str] = set()
# Discord bot tokens have three base64url parts; scrub anything of that shape even if unregistered.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,40}")
# Interaction and webhook tokens ride in REST paths (`/interactions/{id}/{token}/callback`,
# `/webhooks/{app_id}/{token}/messages/@original`) that discord.py logs at DEBUG; one is enough to
# edit or delete the bot's replies for 15 minutes.
_PATH_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/\s?#'\"]+")
# ...and in payloads, as `"token": "..."`.
_FIELD_TOKEN = re.compile(r"""(["']token["']\s*:\s*["'])[^"']+""")
# Interaction tokens themselves begin with base64 "interaction:"; a job's log row carries one, and
# database drivers log statement parameters at DEBUG (aiosqlite does, whatever SQLAlchemy hides).
_INTERACTION_TOKEN = re.compile(r"aW50ZXJhY3Rpb246[A-Za-z0-9_-]+")
# A password in any URL (`scheme://user:password@host`).
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s/@]+@", re.IGNORECASE)


# Library loggers held at a level however low LOG_LEVEL goes (MMPP's own loggers follow LOG_LEVEL): below
# it they write what must never reach a log. `scrub` catches the shapes it knows; these carry values of
# any shape: a statement's parameters (a job's row holds the member's interaction token: aiosqlite
# writes every statement with them at DEBUG, SQLAlchemy at INFO), connection URLs with their password,
# raw gateway events (interaction tokens, attachment URLs), request headers.
LIBRARY_FLOORS: dict[str, int] = {
    "sqlalchemy": logging.WARNING, "aiosqlite": logging.INFO, "asyncpg": logging.INFO,
    "redis": logging.INFO, "arq": logging.INFO, "aiohttp": logging.INFO,
    "discord": logging.INFO, "discord.gateway": logging.WARNING,
    "httpx": logging.WARNING, "httpcore": logging.INFO, "httpcore2": logging.INFO, "urllib3": logging.WARNING,
    # Loud at INFO about things a bot operator does not act on.
    "PIL": logging.WARNING, "diffusers": logging.WARNING, "transformers": logging.WARNING,
}
# discord.py's webhook logger (interaction replies and their edits) keeps DEBUG: it writes a method, a
# path and a status, and the one credential there, the token in the path, `scrub` blanks. Not
# discord.http: at DEBUG it writes whole response bodies (attachment URLs, members, messages).
SCRUBBED_AT_DEBUG = ("discord.webhook",)


def register_secret(value: str | None) -> None:
    """Make sure `value` never reaches a log line (it is replaced by `***`)."""
    if value and len(value) >= 6:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    text = _PATH_TOKEN.sub(r"\1***", text)
    text = _FIELD_TOKEN.sub(r"\1***", text)
    text = _INTERACTION_TOKEN.sub("***", text)
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _TOKEN_SHAPE.sub("***", text)


def hide_url_password(url: str) -> str:
    """`url` with its password replaced by `***`, even when the URL is malformed (a typo in
    DATABASE_URL must not print the password in the error that reports the typo)."""
    at = url.rfind("@")
    if at < 0:
        return url
    start = url.find("//")
    start = start + 2 if 0 <= start < at else 0
    user, colon, _ = url[start:at].partition(":")
    return f"{url[:start]}{user}:***{url[at:]}" if colon else url


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}) or {})
        message = record.getMessage()
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.as_json:
            payload = {
                "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "event": message,
                **fields,
            }
            return scrub(json.dumps(payload, default=str))
        parts = [self.formatTime(record, "%H:%M:%S"), record.levelname[0], record.name, message]
        parts += [f"{k}={_plain(v)}" for k, v in fields.items()]
        return scrub(" ".join(parts))


class _ScrubRecord(logging.Filter):
    """Scrubs the record itself before the handler sees it: a handler that fails to write prints
    the raw message and arguments (`Handler.handleError`), and those must be clean too."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def _plain(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or "\n" in text or not text) else text


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    logger.log(level, event, extra={"fields": fields})


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    fmt = fmt or os.environ.get("LOG_FORMAT") or "text"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(as_json=fmt == "json"))
    handler.addFilter(_ScrubRecord())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, floor in LIBRARY_FLOORS.items():
        logging.getLogger(name).setLevel(max(floor, root.level))
    for name in SCRUBBED_AT_DEBUG:
        logging.getLogger(name).setLevel(root.level)

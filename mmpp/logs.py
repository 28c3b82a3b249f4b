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


def register_secret(value: str | None) -> None:
    """Make sure `value` never reaches a log line (it is replaced by `***`)."""
    if value and len(value) >= 6:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return _TOKEN_SHAPE.sub("***", text)


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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that are loud at INFO about things a bot operator does not act on.
    for noisy in ("httpx", "urllib3", "PIL", "discord.gateway", "diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

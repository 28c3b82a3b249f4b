"""What crosses Redis is sealed: whoever can reach Redis can neither read a member's face crop nor
hand the bot a portrait, a preview or a safety verdict of their own.

With `QUEUE_SECRET` (a key the bot and its workers share), batch payloads, every progress and end
event, and every result are encrypted and authenticated with Fernet (AES-128-CBC and
HMAC-SHA256, from `cryptography`). Events and results also name their job and attempt inside the
seal, so a sealed entry cannot be replayed onto another member's job. Without a secret the same
frames travel in clear, which the Redis backend allows only on a loopback Redis (`check_transport`).

The bot skips an event that does not verify (a job whose end never verifies ends at the bot's
deadline) and refuses a result that does not verify or is not a PNG within `MAX_RESULT_BYTES`.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import json
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from PIL import Image

from mmpp.errors import UserFacingError
from mmpp.logs import register_secret

# A portrait PNG is a few MB at 1024 px; anything far larger is not one of ours.
MAX_RESULT_BYTES = 32 * 1024 * 1024
MAX_RESULT_SIDE = 4096
# A progress or end event: a few fields and, at most, a small preview PNG.
MAX_EVENT_BYTES = 8 * 1024 * 1024
GENERATE = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class Forged(Exception):
    """Something read from Redis that this bot's workers did not write."""


class QueueSecretError(UserFacingError):
    code = "queue_secret"


class Seal:
    """Seals and opens what the bot and its workers exchange; `Seal(None)` is the clear form."""

    def __init__(self, secret: str | None) -> None:
        self._fernet: Fernet | None = None
        if secret:
            register_secret(secret)
            try:
                self._fernet = Fernet(secret.strip().encode())
            except (ValueError, binascii.Error):
                raise QueueSecretError(f"QUEUE_SECRET is not a Fernet key. Generate one with: {GENERATE}") from None

    @property
    def encrypted(self) -> bool:
        return self._fernet is not None

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data) if self._fernet is not None else data

    def open(self, data: bytes, max_bytes: int) -> bytes:
        if len(data) > max_bytes * 2:  # a Fernet token is base64 of the data: 4/3 of it, plus a header
            raise Forged("too large")
        if self._fernet is None:
            return data
        try:
            return self._fernet.decrypt(data)
        except InvalidToken:
            raise Forged("does not verify") from None

    # --- batch payloads (bot → worker) ---------------------------------------------------------

    def seal_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"sealed": self.seal(json.dumps(payload, default=_b64, separators=(",", ":")).encode())}

    def open_payload(self, wrapped: dict[str, Any]) -> dict[str, Any]:
        sealed = wrapped.get("sealed") if isinstance(wrapped, dict) else None
        if not isinstance(sealed, bytes):
            raise Forged("not a sealed payload")
        try:
            return json.loads(self.open(sealed, MAX_RESULT_BYTES), object_hook=_unb64)  # type: ignore[no-any-return]
        except ValueError:
            raise Forged("not a payload") from None

    # --- events (worker → bot, one Redis Stream per job) -------------------------------------

    def seal_event(self, job_id: str, attempt: int, fields: dict[str, Any]) -> dict[str, bytes]:
        body = {"job": job_id, "attempt": attempt, **{k: v for k, v in fields.items() if v is not None}}
        return {"x": self.seal(json.dumps(body, default=_b64, separators=(",", ":")).encode())}

    def open_event(self, job_id: str, attempt: int, entry: dict[bytes, bytes]) -> dict[str, Any]:
        sealed = entry.get(b"x")
        if sealed is None:
            raise Forged("not a sealed event")
        try:
            body = json.loads(self.open(sealed, MAX_EVENT_BYTES), object_hook=_unb64)
        except ValueError:
            raise Forged("not an event") from None
        if not isinstance(body, dict) or body.get("job") != job_id or body.get("attempt") != attempt:
            raise Forged("another job's event")
        return body

    # --- results (worker → bot) --------------------------------------------------------------

    def seal_result(self, job_id: str, attempt: int, png: bytes) -> bytes:
        return self.seal(_result_header(job_id, attempt) + png)

    def open_result(self, job_id: str, attempt: int, data: bytes) -> Image.Image:
        """The portrait as a PNG of sane size, from this job's own worker; `Forged` otherwise."""
        plain = self.open(data, MAX_RESULT_BYTES)
        header = _result_header(job_id, attempt)
        if not plain.startswith(header) or len(plain) - len(header) > MAX_RESULT_BYTES:
            raise Forged("another job's result")
        try:
            image = Image.open(io.BytesIO(plain[len(header):]), formats=["PNG"])
            if max(image.size) > MAX_RESULT_SIDE:
                raise Forged("not a portrait's size")
            image.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise Forged("not a PNG") from None
        return image


def check_transport(url: str, seal: Seal) -> None:
    """Without QUEUE_SECRET, faces would cross the network in clear: only a loopback Redis is allowed."""
    if seal.encrypted:
        return
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise QueueSecretError(
            f"REDIS_URL points at {host or 'another machine'}, and QUEUE_SECRET is not set: members' faces "
            f"would cross the network readable by anyone with access to Redis. Generate a secret with: "
            f"{GENERATE} and set QUEUE_SECRET to it on the bot and on every worker."
        )


def _result_header(job_id: str, attempt: int) -> bytes:
    return f"mmpp-result:{job_id}:{attempt}\n".encode()


def _b64(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__b64": base64.b64encode(value).decode()}
    raise TypeError(f"cannot send {type(value).__name__} through Redis")


def _unb64(obj: dict[str, Any]) -> Any:
    if set(obj) == {"__b64"}:
        return base64.b64decode(obj["__b64"])
    return obj

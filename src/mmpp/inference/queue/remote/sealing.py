"""What crosses Redis is sealed or signed with QUEUE_SECRET: whoever can reach Redis can neither read
a member's face crop, nor hand the bot a portrait, an event or a heartbeat of their own, nor cancel a
job, nor pose as a worker.

QUEUE_SECRET is a Fernet key the bot and its workers share, required with the Redis backend wherever
Redis runs (a Redis on 127.0.0.1 may also listen elsewhere, and any local process may reach it).
- Sealed (Fernet: AES-128-CBC and HMAC-SHA256, from `cryptography`): batch payloads, every progress
  and end event, every result. Events and results name their job and attempt inside the seal, so a
  sealed entry cannot be replayed onto another member's job.
- Signed (HMAC-SHA256 with a key derived from the secret, content readable): heartbeats, the catalog,
  claims and cancel flags; `at` fields (Redis's clock) make an old copy stale.
- Job keys are named by `tag`, an HMAC of the job id and attempt under another derived key.

The bot skips what does not verify (logged as a warning) and refuses a result that is not a PNG
within `MAX_RESULT_BYTES`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken
from PIL import Image

from mmpp.errors import UserFacingError
from mmpp.inference.queue.remote import transport as t
from mmpp.logs import register_secret

if TYPE_CHECKING:
    from mmpp.settings import Settings

# A portrait PNG is a few MB at 1024 px; anything far larger is not one of ours.
MAX_RESULT_BYTES = 32 * 1024 * 1024
MAX_RESULT_SIDE = 4096
# A progress or end event: a few fields and, at most, a small preview PNG.
MAX_EVENT_BYTES = 8 * 1024 * 1024
# A heartbeat, the catalog or a claim: a few hundred bytes per style at most.
MAX_SIGNED_BYTES = 1024 * 1024
GENERATE = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class Forged(Exception):
    """Something read from Redis that this bot's workers (or bots) did not write."""


class QueueSecretError(UserFacingError):
    code = "queue_secret"


def missing_secret(who: str) -> QueueSecretError:
    """The one line a start without QUEUE_SECRET prints."""
    return QueueSecretError(f"{who} needs QUEUE_SECRET, the same key on the bot and every worker "
                            f"(make one with: {GENERATE})")


class Seal:
    """Seals, signs and opens what the bot and its workers exchange, with the shared secret."""

    def __init__(self, secret: str) -> None:
        register_secret(secret)
        try:
            key = base64.urlsafe_b64decode(secret.strip().encode())
            self._fernet = Fernet(secret.strip().encode())
        except (ValueError, binascii.Error):
            raise QueueSecretError(f"QUEUE_SECRET is not a Fernet key (make one with: {GENERATE})") from None
        # Separate keys for separate uses: a signature can never be taken for a key name, nor either
        # for a Fernet token.
        self._sign_key = hmac.digest(key, b"mmpp wire v2: signatures", "sha256")
        self._name_key = hmac.digest(key, b"mmpp wire v2: key names", "sha256")

    @classmethod
    def from_secret(cls, secret: str | None, who: str) -> Seal:
        if not secret or not secret.strip():
            raise missing_secret(who)
        return cls(secret)

    @classmethod
    def from_settings(cls, settings: Settings, who: str) -> Seal:
        """The seal of QUEUE_SECRET; `who` (a bot, this worker) is named where it is missing."""
        return cls.from_secret(settings.queue_secret.get_secret_value() if settings.queue_secret else None, who)

    # --- Fernet --------------------------------------------------------------------------------

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def open(self, data: bytes, max_bytes: int) -> bytes:
        if len(data) > max_bytes * 2:  # a Fernet token is base64 of the data: 4/3 of it, plus a header
            raise Forged("too large")
        try:
            return self._fernet.decrypt(data)
        except InvalidToken:
            raise Forged("does not verify") from None

    # --- signatures ----------------------------------------------------------------------------

    def _mac(self, kind: str, body: bytes) -> str:
        return hmac.new(self._sign_key, kind.encode() + b"\0" + body, hashlib.sha256).hexdigest()

    def sign(self, kind: str, record: dict[str, Any]) -> bytes:
        """`record` as JSON with its signature; `kind` is signed too (a heartbeat is no claim)."""
        body = json.dumps(record, separators=(",", ":"), sort_keys=True)
        return json.dumps({"body": body, "mac": self._mac(kind, body.encode())}, separators=(",", ":")).encode()

    def verify(self, kind: str, raw: bytes | None) -> dict[str, Any]:
        if raw is None or len(raw) > MAX_SIGNED_BYTES:
            raise Forged(f"no {kind}" if raw is None else "too large")
        try:
            wrapped = json.loads(raw)
            body, mac = str(wrapped["body"]), str(wrapped["mac"])
        except (ValueError, KeyError, TypeError):
            raise Forged(f"not a signed {kind}") from None
        if not hmac.compare_digest(mac, self._mac(kind, body.encode())):
            raise Forged(f"a {kind} that does not verify")
        record = json.loads(body)
        if not isinstance(record, dict):
            raise Forged(f"not a {kind}")
        return record

    @staticmethod
    def read_unverified(raw: bytes) -> dict[str, Any]:
        """A signed record's content, for tests and tools that only look (never for a decision)."""
        return json.loads(json.loads(raw)["body"])  # type: ignore[no-any-return]

    # --- job key names and cancel flags ---------------------------------------------------------

    def tag(self, job_id: str, attempt: int) -> str:
        """What a job's keys are named by: no job id in clear, no key name guessable without the secret."""
        return hmac.new(self._name_key, f"{job_id}\0{attempt}".encode(), hashlib.sha256).hexdigest()[:32]

    def cancel_flag(self, job_id: str, attempt: int) -> bytes:
        """The one value that cancels this job's attempt; anything else under its key is ignored."""
        return self._mac("cancel", f"{job_id}\0{attempt}".encode()).encode()

    def is_cancel(self, job_id: str, attempt: int, value: bytes | None) -> bool:
        return value is not None and hmac.compare_digest(value, self.cancel_flag(job_id, attempt))

    # --- batch payloads (bot → worker) ---------------------------------------------------------

    def seal_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"sealed": self.seal(json.dumps(payload, default=t.encode_bytes, separators=(",", ":")).encode())}

    def open_payload(self, wrapped: dict[str, Any]) -> dict[str, Any]:
        sealed = wrapped.get("sealed") if isinstance(wrapped, dict) else None
        if not isinstance(sealed, bytes):
            raise Forged("not a sealed payload")
        try:
            return json.loads(self.open(sealed, MAX_RESULT_BYTES), object_hook=t.decode_bytes)  # type: ignore[no-any-return]
        except ValueError:
            raise Forged("not a payload") from None

    # --- events (worker → bot, one Redis Stream per job) -------------------------------------

    def seal_event(self, job_id: str, attempt: int, record: dict[str, Any]) -> dict[str, bytes]:
        body = {"job": job_id, "attempt": attempt, "event": record}
        return {"x": self.seal(json.dumps(body, default=t.encode_bytes, separators=(",", ":")).encode())}

    def open_event(self, job_id: str, attempt: int, entry: dict[bytes, bytes]) -> dict[str, Any]:
        sealed = entry.get(b"x")
        if sealed is None:
            raise Forged("not a sealed event")
        try:
            body = json.loads(self.open(sealed, MAX_EVENT_BYTES), object_hook=t.decode_bytes)
        except ValueError:
            raise Forged("not an event") from None
        if not isinstance(body, dict) or body.get("job") != job_id or body.get("attempt") != attempt:
            raise Forged("another job's event")
        return body["event"]  # type: ignore[no-any-return]

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


def _result_header(job_id: str, attempt: int) -> bytes:
    return f"mmpp-result:{job_id}:{attempt}\n".encode()

"""Where the bot and its workers meet in Redis: every key's name, how long what it holds lives there,
the heartbeat's rhythm, the connection (its retries, its password kept out of logs), and arq's job
serializer. What the keys hold is `protocol`'s records; this module knows nothing of them.

The transport is arq (jobs, per-worker queues, `_job_id` de-duplication, `_expires`); everything a
job carries is JSON with raw images as base64, never pickle, so whoever can write to Redis still
cannot run code on a worker.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlsplit

from arq.connections import RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mmpp.logs import register_secret

# The arq function every worker serves; one batch of one style per call.
BATCH_FUNCTION = "run_batch"
CATALOG_KEY = "mmpp:catalog"
WORKER_PREFIX = "mmpp:worker:"
# A worker refreshes its heartbeat every HEARTBEAT_EVERY_S; a kill -9 is noticed when it lapses.
HEARTBEAT_EVERY_S = 1.0
HEARTBEAT_TTL_S = 5.0
# Streams, results and cancel flags outlive a job only by this much (the Discord reply's lifetime).
EVENT_TTL_S = 15 * 60
# Longest a batch may run on a worker (BATCH_TIMEOUT_S): a hung GPU should not hold a worker forever.
DEFAULT_BATCH_TIMEOUT_S = 15 * 60
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


# --- key names ----------------------------------------------------------------------------------
# A job's keys are named by its tag (`Seal.tag`: an HMAC of the job id and attempt under the secret),
# so whoever lists Redis's keys learns no job id and cannot name a job's keys before they exist.


def worker_key(worker_id: str) -> str:
    return WORKER_PREFIX + worker_id


def claim_key(worker_id: str) -> str:
    """Held by the one bot process whose batch the worker is drawing (several bot processes, one
    per shard range, share the workers; a worker takes one batch at a time)."""
    return f"mmpp:claim:{worker_id}"


def worker_queue(worker_id: str) -> str:
    """Each worker has its own arq queue: the bot hands a batch to one worker that said it has room."""
    return f"mmpp:arq:{worker_id}"


def take_name(job_id: str, take: int) -> str:
    """What a set's take is sealed under: the job itself for the first, the job and its number after."""
    return job_id if take == 0 else f"{job_id}#{take}"


def events_key(tag: str) -> str:
    return f"mmpp:ev:{tag}"


def result_key(tag: str, take: int = 0) -> str:
    """The finished picture; a set's later takes (`take` 1, 2, …) each under their own key."""
    return f"mmpp:png:{tag}" + (f":{take}" if take else "")


def cancel_key(tag: str) -> str:
    return f"mmpp:cancel:{tag}"


def nonce_key(nonce: str) -> str:
    """Set (NX) by the worker that takes a batch: a second worker, or the same one, refuses it after."""
    return f"mmpp:nonce:{nonce}"


def batch_marker(batch_id: str) -> str:
    return f"mmpp:batch:{batch_id}"


def arq_job_key(batch_id: str) -> str:
    return f"arq:job:{batch_id}"


def redis_settings(url: str) -> RedisSettings:
    """arq's settings for `url`, with the password registered as a secret so no log line carries it,
    and commands retried across a short drop so a Redis restart costs a pause, not a crash."""
    parts = urlsplit(url)
    register_secret(parts.password)
    settings = RedisSettings.from_dsn(url)
    settings.conn_retries = 0
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError]
    settings.retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3)
    return settings


def display_url(url: str) -> str:
    """The URL as logs show it: the password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


# --- arq's job serializer: JSON, bytes as base64 ------------------------------------------------


def serialize(data: Any) -> bytes:
    return json.dumps(data, default=encode_bytes, separators=(",", ":")).encode()


def deserialize(raw: bytes) -> Any:
    return json.loads(raw, object_hook=decode_bytes)


def encode_bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__b64": base64.b64encode(value).decode()}
    raise TypeError(f"cannot send {type(value).__name__} through Redis")


def decode_bytes(obj: dict[str, Any]) -> Any:
    if set(obj) == {"__b64"}:
        return base64.b64decode(obj["__b64"])
    return obj

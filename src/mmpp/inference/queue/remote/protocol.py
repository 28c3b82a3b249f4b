"""What the bot and its GPU workers agree on through Redis: key names, the batch payload, the
catalog fingerprint, and the connection settings.

The transport is arq (jobs, per-worker queues, `_job_id` de-duplication, `_expires`); everything a
job carries is JSON with raw images as base64, never pickle, so whoever can write to Redis still
cannot run code on a worker.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from arq.connections import RedisSettings
from PIL import Image
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.faces import Box
from mmpp.inference.generation import GenerationRequest, to_png
from mmpp.inference.styles import StyleCatalog
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


def events_key(job_id: str, attempt: int) -> str:
    return f"mmpp:ev:{job_id}:{attempt}"


def result_key(job_id: str, attempt: int, take: int = 0) -> str:
    """The finished picture; a set's later takes (`take` 1, 2, …) each under their own key."""
    return f"mmpp:png:{job_id}:{attempt}" + (f":{take}" if take else "")


def cancel_key(job_id: str, attempt: int) -> str:
    return f"mmpp:cancel:{job_id}:{attempt}"


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


# --- the catalog fingerprint ------------------------------------------------------------------


def catalog_fingerprint(catalog: StyleCatalog, resolution: int) -> dict[str, Any]:
    """What must match between the bot and a worker: each style's definition and LoRA file size,
    and the drawing size. Hashing whole LoRA files (hundreds of MB) would slow every start."""
    styles: dict[str, str] = {}
    for name, style in sorted(catalog.styles.items()):
        digest = hashlib.sha256(style.definition.model_dump_json().encode())
        source = style.definition.lora.source if style.definition.lora is not None else None
        if source:
            path = style.folder / source
            digest.update(str(path.stat().st_size if path.is_file() else source).encode())
        styles[name] = digest.hexdigest()[:16]
    return {"styles": styles, "resolution": resolution}


def describe_difference(bot: dict[str, Any], worker: dict[str, Any]) -> str | None:
    """One line saying how a worker's models differ from the bot's, or None when they match."""
    problems = []
    bot_styles, own = bot.get("styles", {}), worker.get("styles", {})
    if missing := sorted(set(bot_styles) - set(own)):
        problems.append(f"styles the bot has and this worker lacks: {', '.join(missing)}")
    if extra := sorted(set(own) - set(bot_styles)):
        problems.append(f"styles only this worker has: {', '.join(extra)}")
    if changed := sorted(n for n in set(bot_styles) & set(own) if bot_styles[n] != own[n]):
        problems.append(f"styles that differ (definition or LoRA file): {', '.join(changed)}")
    if bot.get("resolution") != worker.get("resolution"):
        problems.append(f"drawing size {worker.get('resolution')} px here, {bot.get('resolution')} px on the bot")
    return "; ".join(problems) or None


# --- the batch payload ------------------------------------------------------------------------


# The most takes one job may ask for (CANDIDATES' limit): a payload asking more is refused, so
# whoever can write to Redis cannot make a worker draw without end.
MAX_TAKES = 4


class BadPayload(ValueError):
    """A batch no bot of ours would send."""


@dataclass(frozen=True)
class RemoteJob:
    """One job of a batch as the worker receives it; `more_seeds`: a set's takes after the first."""

    id: str
    attempt: int
    request: GenerationRequest
    previews: bool
    more_seeds: tuple[int, ...] = ()


def encode_batch(
    batch_id: str, jobs: list[tuple[str, int, GenerationRequest, bool]], not_after: float,
    *, more_seeds: dict[str, list[int]] | None = None,
) -> dict:
    """`jobs`: (job id, attempt, request, previews). `not_after`: a time on the Redis server's
    clock (`TIME`) after which the worker must not start the batch (the Discord reply would have
    expired). Redis's clock, because bot and worker machines' clocks may disagree by any amount.
    `more_seeds`: by job id, the seeds of a set's later takes (absent: one take, as a bot that
    predates sets sends)."""
    more_seeds = more_seeds or {}
    return {
        "batch": batch_id,
        "not_after": not_after,
        "jobs": [
            {
                "id": job_id, "attempt": attempt, "previews": previews,
                "style": r.style, "seed": r.seed, "steps": r.steps, "lora_scale": r.lora_scale,
                "background": r.background, "framing": r.framing, "safety": r.safety, "fast": r.fast,
                "unlinkable": r.unlinkable,
                "face": to_png(r.face.face), "control": to_png(r.face.control),
                "box": [r.face.box.x, r.face.box.y, r.face.box.w, r.face.box.h],
                "source_size": list(r.face.source_size),
                **({"more_seeds": list(more_seeds[job_id])} if more_seeds.get(job_id) else {}),
            }
            for job_id, attempt, r, previews in jobs
        ],
    }


def decode_batch(payload: dict) -> tuple[str, float, list[RemoteJob]]:
    jobs = []
    for item in payload["jobs"]:
        face = PreparedFace(
            face=_image(item["face"]), control=_image(item["control"]),
            box=Box(*(int(v) for v in item["box"])), source_size=tuple(int(v) for v in item["source_size"]),  # type: ignore[arg-type]
        )
        request = GenerationRequest(
            face=face, style=str(item["style"]), seed=int(item["seed"]),
            steps=None if item["steps"] is None else int(item["steps"]),
            lora_scale=None if item["lora_scale"] is None else float(item["lora_scale"]),
            background=item["background"], framing=item["framing"],
            # Anything but an explicit "relaxed" (a bot that predates the field included) is strict.
            safety="relaxed" if item.get("safety") == "relaxed" else "strict",
            # The fast preset: None (absent from an older bot) leaves it to the worker's FAST_PRESET.
            fast=None if item.get("fast") is None else bool(item["fast"]),
            # Only an explicit false turns the guard off (a bot that predates the field gets it on).
            unlinkable=item.get("unlinkable") is not False,
        )
        more = item.get("more_seeds") or []
        if not isinstance(more, list) or len(more) >= MAX_TAKES:
            raise BadPayload(f"a job asks for {len(more) + 1 if isinstance(more, list) else '?'} takes")
        jobs.append(RemoteJob(str(item["id"]), int(item["attempt"]), request, bool(item["previews"]),
                              tuple(int(s) for s in more)))
    return str(payload["batch"]), float(payload["not_after"]), jobs


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def serialize(data: Any) -> bytes:
    """arq's job serializer: JSON, bytes as base64."""
    return json.dumps(data, default=_encode_bytes, separators=(",", ":")).encode()


def deserialize(raw: bytes) -> Any:
    return json.loads(raw, object_hook=_decode_bytes)


def _encode_bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__b64": base64.b64encode(value).decode()}
    raise TypeError(f"cannot send {type(value).__name__} to a worker")


def _decode_bytes(obj: dict) -> Any:
    if set(obj) == {"__b64"}:
        return base64.b64decode(obj["__b64"])
    return obj

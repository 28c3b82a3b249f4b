"""What a remote worker's events mean on the bot's side: the queue's step, finished set, failure or
cancel for each event a job's stream carries, once the courier (`courier.Courier`) has opened it.

A worker sends a code and fields, never words: the bot words them as it words its own (an unknown
code reads as the engine error), and keeps only the fields a sentence can show. Fetching and opening
a finished set's pictures is the courier's; it hands them here with the event that announced them.
"""

from __future__ import annotations

import time
from typing import Any

from PIL import Image

from mmpp.inference.generation import GenerationResult
from mmpp.inference.queue.jobs import Cancelled, Done, Failed, Job, Step, TerminalEvent, Timings
from mmpp.inference.queue.line import TIMED_OUT
from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.worker import ENGINE_ERROR

# A batch past its deadline, whether the worker stopped it (`batch_timeout`) or the bot stopped waiting.
TOO_LONG = Failed("timeout", {"stage": "drawing"})
# A failure's fields are checked: short plain values only.
FIELD_MAX_CHARS = 200


def step(event: p.Event) -> Step:
    """A denoising step, with its preview where the job asked for previews."""
    return Step(event.step, event.steps, p.png_image(event.preview) if event.preview else None)


def done(job: Job, event: p.Event, images: list[Image.Image | None], started: float) -> Done:
    """The finished set: one picture per take, None where the worker's safety check refused it (it
    comes without pixels). `started`: when the courier began following, for a job the queue saw no start of."""
    results = [
        GenerationResult(
            image=image, seed=take.seed, style=job.style, seconds=event.seconds, flagged=image is None,
            linkable=take.linkable, guard=take.guard, may_link=take.may_link,
        )
        for take, image in zip(event.takes, images, strict=True)
    ]
    now = time.monotonic()
    started_at = job.started_at if job.started_at is not None else started
    timings = Timings(
        waited_s=started_at - job.submitted_at, ran_s=now - started_at, engine_s=event.seconds,
        batch_size=job.batch_size,
    )
    return Done(results[0], timings, tuple(results[1:]))


def ended(event: p.Event) -> TerminalEvent | None:
    """A failure's code and fields, or a cancel; None for "started", or anything newer than this bot
    (nothing to show)."""
    if event.kind == "failed":
        code = event.code or ENGINE_ERROR
        if code == "batch_timeout":
            return TOO_LONG
        if code == "expired":
            return TIMED_OUT
        return Failed(code, _plain(event.fields))
    if event.kind == "cancelled":
        return Cancelled()
    return None


def _plain(fields: object) -> dict[str, Any]:
    """A worker's failure fields, kept only where each is a plain short value a sentence can show."""
    if not isinstance(fields, dict):
        return {}
    return {
        str(name): value for name, value in fields.items()
        if isinstance(value, int | float | bool) or (isinstance(value, str) and len(value) <= FIELD_MAX_CHARS)
        or (isinstance(value, list) and all(isinstance(v, str) and len(v) <= FIELD_MAX_CHARS for v in value))
    }

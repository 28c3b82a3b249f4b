"""What the bot and its GPU workers say to each other: every record that crosses Redis (the batch, a
job's events, the heartbeat, the catalog, a claim) as a dataclass with its `to_wire` and `from_wire`,
and the catalog fingerprint both sides compare. worker.py and the bot's slots only call these;
sealing.py seals and signs what they return; `transport` names the keys they are kept under.

Version `WIRE_VERSION` (2; the unversioned format before it, with one-letter event keys, was 1). A
record of another version is refused, not guessed at: QUEUE_SECRET is required and key names changed in
version 2, so a worker of version 1 could not read a batch anyway. Bot and workers upgrade together.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from PIL import Image

from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.faces import Box
from mmpp.inference.generation import GenerationRequest, GuardOutcome, to_png
from mmpp.inference.styles import StyleCatalog

WIRE_VERSION = 2
# The most takes one job may ask for (CANDIDATES' limit): a payload asking more is refused, so
# whoever can write to Redis cannot make a worker draw without end.
MAX_TAKES = 4


class BadPayload(ValueError):
    """A record no bot or worker of this version would write."""



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


# --- records ------------------------------------------------------------------------------------


def _versioned(kind: str, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadPayload(f"a {kind} that is not an object")
    if data.get("version") != WIRE_VERSION:
        raise BadPayload(f"a {kind} of wire version {data.get('version')!r}, this side speaks {WIRE_VERSION}")
    return data


@dataclass(frozen=True)
class RemoteJob:
    """One job of a batch as the worker receives it; `more_seeds`: a set's takes after the first."""

    id: str
    attempt: int
    request: GenerationRequest
    previews: bool
    more_seeds: tuple[int, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        r = self.request
        return {
            "id": self.id, "attempt": self.attempt, "previews": self.previews,
            "style": r.style, "seed": r.seed, "steps": r.steps, "lora_scale": r.lora_scale,
            "background": r.background, "framing": r.framing, "safety": r.safety, "fast": r.fast,
            "unlinkable": r.unlinkable,
            "face": to_png(r.face.face), "control": to_png(r.face.control),
            "box": [r.face.box.x, r.face.box.y, r.face.box.w, r.face.box.h],
            "source_size": list(r.face.source_size), "more_seeds": list(self.more_seeds),
        }

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> RemoteJob:
        more = item["more_seeds"]
        if not isinstance(more, list) or len(more) >= MAX_TAKES:
            raise BadPayload(f"a job asks for {len(more) + 1 if isinstance(more, list) else '?'} takes")
        face = PreparedFace(
            face=png_image(item["face"]), control=png_image(item["control"]),
            box=Box(*(int(v) for v in item["box"])),
            source_size=tuple(int(v) for v in item["source_size"]),  # type: ignore[arg-type]
        )
        request = GenerationRequest(
            face=face, style=str(item["style"]), seed=int(item["seed"]),
            steps=None if item["steps"] is None else int(item["steps"]),
            lora_scale=None if item["lora_scale"] is None else float(item["lora_scale"]),
            background=item["background"], framing=item["framing"],
            # Fail closed, whatever is written there: anything but "relaxed" is strict, anything but
            # an explicit false keeps the guard on.
            safety="relaxed" if item.get("safety") == "relaxed" else "strict",
            fast=None if item.get("fast") is None else bool(item["fast"]),
            unlinkable=item.get("unlinkable") is not False,
        )
        return cls(str(item["id"]), int(item["attempt"]), request, bool(item["previews"]), tuple(int(s) for s in more))


@dataclass(frozen=True)
class Batch:
    """What the bot hands one worker. `not_after`: a time on the Redis server's clock (`TIME`) after
    which the worker must not start it (the Discord replies would have expired); Redis's clock,
    because bot and worker machines' clocks may disagree by any amount. `nonce`: taken once, by one
    worker (`transport.nonce_key`), so a payload copied back into a queue is refused."""

    id: str
    nonce: str
    not_after: float
    jobs: tuple[RemoteJob, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"version": WIRE_VERSION, "batch": self.id, "nonce": self.nonce, "not_after": self.not_after,
                "jobs": [job.to_wire() for job in self.jobs]}

    @classmethod
    def from_wire(cls, data: Any) -> Batch:
        data = _versioned("batch", data)
        nonce = str(data["nonce"])
        if len(nonce) < 16:
            raise BadPayload("a batch without a nonce")
        jobs = tuple(RemoteJob.from_wire(item) for item in data["jobs"])
        return cls(str(data["batch"]), nonce, float(data["not_after"]), jobs)


@dataclass(frozen=True)
class Take:
    """One picture of a job's set: drawn (its PNG under `transport.result_key`) or `filtered` (no pixels sent)."""

    seed: int
    linkable: bool = False
    filtered: bool = False
    # What the worker's unlinkable guard made of it, and whether face matching may tie it to the selfie.
    # A take that does not say is unmeasured and may link: the guard fails closed.
    guard: GuardOutcome = "unmeasured"
    may_link: bool = True


EventKind = Literal["started", "step", "done", "failed", "cancelled"]


@dataclass(frozen=True)
class Event:
    """One entry of a job's stream. "done" always lists its takes (one or several); a take the
    safety check refused is `filtered`. "failed" carries a `code`, never words."""

    kind: EventKind
    step: int = 0
    steps: int = 0
    preview: bytes | None = None
    takes: tuple[Take, ...] = ()
    seconds: float = 0.0
    code: str = ""
    # A failure's fields (numbers, names; the bot keeps only short plain values): never words.
    fields: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": WIRE_VERSION, "kind": self.kind}
        if self.kind == "step":
            data.update(step=self.step, steps=self.steps, preview=self.preview)
        elif self.kind == "done":
            data.update(seconds=self.seconds, takes=[
                {"seed": t.seed, "linkable": t.linkable, "filtered": t.filtered, "guard": t.guard,
                 "may_link": t.may_link} for t in self.takes
            ])
        elif self.kind == "failed":
            data["code"] = self.code
            if self.fields:
                data["fields"] = self.fields
        return data

    @classmethod
    def from_wire(cls, data: Any) -> Event:
        data = _versioned("event", data)
        kind = data.get("kind")
        if kind == "step":
            preview = data.get("preview")
            return cls("step", step=int(data["step"]), steps=int(data["steps"]),
                       preview=preview if isinstance(preview, bytes) else None)
        if kind == "done":
            takes = data["takes"]
            if not isinstance(takes, list) or not 1 <= len(takes) <= MAX_TAKES:
                raise BadPayload("a result with no takes, or too many")
            return cls("done", seconds=float(data["seconds"]), takes=tuple(
                Take(int(t["seed"]), t["linkable"] is True, t["filtered"] is True, _guard(t.get("guard")),
                     t.get("may_link") is not False)
                for t in takes
            ))
        if kind == "failed":
            fields = data.get("fields")
            return cls("failed", code=str(data["code"]), fields=fields if isinstance(fields, dict) else {})
        if kind in ("started", "cancelled"):
            return cls(kind)
        raise BadPayload(f"an event of kind {kind!r}")


@dataclass(frozen=True)
class Heartbeat:
    """A worker says it is alive, every HEARTBEAT_EVERY_S, signed with the secret (the bot's only
    health mechanism; arq's own health-check key is neither signed nor read). `at`: Redis's clock
    when it was written, so a copied old heartbeat is stale. `stopping`: alive until its batch is
    delivered, but sent nothing more."""

    worker: str
    device: str
    max_batch: int
    fingerprint: dict[str, Any]
    at: float
    busy: bool = False
    batches: int = 0
    stopping: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"version": WIRE_VERSION, "worker": self.worker, "device": self.device, "max_batch": self.max_batch,
                "fingerprint": self.fingerprint, "at": self.at, "busy": self.busy, "batches": self.batches,
                "stopping": self.stopping}

    @classmethod
    def from_wire(cls, data: Any) -> Heartbeat:
        data = _versioned("heartbeat", data)
        fingerprint = data["fingerprint"]
        if not isinstance(fingerprint, dict):
            raise BadPayload("a heartbeat without a fingerprint")
        return cls(str(data["worker"]), str(data["device"]), int(data["max_batch"]), fingerprint, float(data["at"]),
                   data["busy"] is True, int(data["batches"]), data["stopping"] is True)


@dataclass(frozen=True)
class Catalog:
    """The bot's styles and drawing size, published for workers to compare with their own."""

    fingerprint: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"version": WIRE_VERSION, "fingerprint": self.fingerprint}

    @classmethod
    def from_wire(cls, data: Any) -> Catalog:
        fingerprint = _versioned("catalog", data)["fingerprint"]
        if not isinstance(fingerprint, dict):
            raise BadPayload("a catalog without a fingerprint")
        return cls(fingerprint)


@dataclass(frozen=True)
class Claim:
    """A bot process holds a worker for one batch; `at` (Redis's clock) is renewed while it follows
    the batch, so a claim copied from an earlier one is stale."""

    bot: str
    worker: str
    at: float

    def to_wire(self) -> dict[str, Any]:
        return {"version": WIRE_VERSION, "bot": self.bot, "worker": self.worker, "at": self.at}

    @classmethod
    def from_wire(cls, data: Any) -> Claim:
        data = _versioned("claim", data)
        return cls(str(data["bot"]), str(data["worker"]), float(data["at"]))


def png_image(data: bytes) -> Image.Image:
    """A PNG off the wire, read whole (no other decoder is offered bytes from Redis)."""
    image = Image.open(io.BytesIO(data), formats=["PNG"])
    image.load()
    return image


def _guard(value: Any) -> GuardOutcome:
    """The guard's outcome as a worker sent it; anything else is `unmeasured` (the guard fails closed)."""
    return value if value in get_args(GuardOutcome) else "unmeasured"

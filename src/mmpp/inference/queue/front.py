"""What the bot sees of the queue: one front for preparing faces, reading the style catalogue,
admission, submitting and places in line, whichever backend draws (local engines or remote
workers through Redis). `GenerationQueue` is that front in both cases; only where its faces are
prepared differs (`FacePreparer`: the first local engine, or `remote.front.EngineFront`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mmpp.inference.conditioning import PreparedFace
    from mmpp.inference.preprocess import LocatedFace
    from mmpp.inference.queue.handle import JobHandle
    from mmpp.inference.queue.jobs import ShutdownReport
    from mmpp.inference.queue.metrics import QueueMetrics
    from mmpp.inference.safety import SafetyLevel
    from mmpp.inference.styles import StyleCatalog


class FacePreparer(Protocol):
    """Knows the styles and turns a located face into what the engine draws from (an `Engine`, or
    `EngineFront` where the bot draws nothing itself)."""

    @property
    def catalog(self) -> StyleCatalog: ...

    def prepare(self, data: bytes | LocatedFace) -> PreparedFace: ...


class QueueFront(Protocol):
    """The queue as the bot uses it. Refusals (`admit`, `submit`) are `UserFacingError`s."""

    metrics: QueueMetrics

    @property
    def catalog(self) -> StyleCatalog: ...

    @property
    def depth(self) -> int: ...

    @property
    def accepting(self) -> bool: ...

    @property
    def on_gpu(self) -> bool: ...

    async def prepare(self, face: LocatedFace) -> PreparedFace: ...

    def admit(self, user_id: int, *, preparing: int = 0) -> None: ...

    def submit(
        self,
        face: PreparedFace,
        style: str,
        *,
        user_id: int,
        guild_id: int | None,
        seed: int | None = None,
        background: str | None = None,
        framing: str | None = None,
        safety: SafetyLevel = "strict",
        unlinkable: bool = True,
        count: int = 1,
    ) -> JobHandle: ...

    def position(self, user_id: int) -> int | None: ...

    def estimated_wait(self, position: int) -> float: ...

    def cancel_user(self, user_id: int) -> bool: ...

    def start(self) -> None: ...

    async def shutdown(self, grace_s: float = 30.0) -> ShutdownReport: ...

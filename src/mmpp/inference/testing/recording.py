"""The real engine behind a recorder, for tests and benchmarks: one wrapper instead of one per test file.

It never replaces the engine: every call still draws. It notes each call (which styles and seeds,
the requests, when it entered and returned and how long it took, the steps as the engine reported
them) and, where a test asks, holds calls at a gate (so jobs line up without races: a held job
stays "drawing"), raises a fault instead of one call, pauses after each step, swaps a call's
results, or claims a device the queue then sees. It prepares faces too, timed, so it can stand
wherever the engine stood: in a queue, or around each engine the bot loads (`BotRuntime(wrap_engine=)`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmpp.inference.conditioning import PreparedFace
    from mmpp.inference.engine import Engine, GenerationRequest, GenerationResult, StepProgress
    from mmpp.inference.preprocess import LocatedFace
    from mmpp.inference.styles import StyleCatalog

# (call index, its requests) -> the exception to raise instead of drawing, or None to draw.
Fault = Callable[[int, Sequence["GenerationRequest"]], BaseException | None]
# (call index, what the engine drew) -> what the caller gets.
Swap = Callable[[int, list["GenerationResult"]], list["GenerationResult"]]


class RecordingEngine:
    # Only set when given: without it the queue and the worker see no device, as with the old wrappers.
    device: str

    def __init__(self, engine: Engine, *, device: str | None = None, swap: Swap | None = None) -> None:
        self.engine = engine
        if device is not None:
            self.device = device
        self.swap = swap
        self.calls: list[list[tuple[str, int]]] = []  # per engine call: (style, seed) of each job
        self.requests: list[GenerationRequest] = []  # every request, in order
        self.entered_at: list[float] = []
        self.returned_at: list[float] = []
        # Seconds per call, in the order calls returned; the benchmarks' engine time.
        self.generate_s: list[float] = []
        self.prepare_s: list[float] = []
        self.steps: list[list[tuple[int, tuple[bool, ...]]]] = []  # per call: (step, active) as the engine saw it
        self.last_step = 0
        self.fault: Fault | None = None
        # A pause after each step, so a test can act between two steps.
        self.step_s = 0.0
        self._gate = threading.Event()
        self._gate.set()
        self._hold_s = 30.0

    @property
    def catalog(self) -> StyleCatalog:
        return self.engine.catalog

    @property
    def resolution(self) -> int:
        return self.engine.resolution

    @property
    def preferred_batch_size(self) -> int | None:
        # The queue caps its batches by what the engine's warm-up measured: recorded, it batches as in production.
        return self.engine.preferred_batch_size

    def hold(self, timeout_s: float = 30.0) -> None:
        """Engine calls from now on wait (on the GPU thread) until `release`, or `timeout_s` at most
        (a failed test must not park the thread for good)."""
        self._hold_s = timeout_s
        self._gate = threading.Event()

    def release(self) -> None:
        self._gate.set()

    def generate(
        self, requests: Sequence[GenerationRequest], on_step: Callable[[StepProgress], None] | None = None
    ) -> list[GenerationResult]:
        index = len(self.calls)
        self.calls.append([(r.style, r.seed) for r in requests])
        self.requests.extend(requests)
        entered = time.perf_counter()
        self.entered_at.append(entered)
        seen: list[tuple[int, tuple[bool, ...]]] = []
        self.steps.append(seen)
        try:
            self._gate.wait(timeout=self._hold_s)
            fault = self.fault(index, requests) if self.fault else None
            if fault is not None:
                raise fault

            def record(progress: StepProgress) -> None:
                seen.append((progress.step, progress.active))
                self.last_step = progress.step
                if on_step is not None:
                    on_step(progress)
                if self.step_s:
                    time.sleep(self.step_s)

            results = self.engine.generate(requests, record)
            return self.swap(index, results) if self.swap is not None else results
        finally:
            returned = time.perf_counter()
            self.returned_at.append(returned)
            self.generate_s.append(returned - entered)

    def prepare(self, data: bytes | LocatedFace) -> PreparedFace:
        start = time.perf_counter()
        try:
            return self.engine.prepare(data)
        finally:
            self.prepare_s.append(time.perf_counter() - start)

    def seeds(self) -> list[list[int]]:
        return [[seed for _, seed in call] for call in self.calls]

    def styles(self) -> list[list[str]]:
        return [[style for style, _ in call] for call in self.calls]

    async def wait_for_calls(self, n: int, timeout: float = 30) -> None:
        """Until `n` calls have reached the engine (a held one counts: it is parked at the gate)."""
        async with asyncio.timeout(timeout):
            # Polled: the calls arrive on the GPU worker thread, where no asyncio primitive may be set.
            while len(self.calls) < n:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

"""The real engine behind a recorder, for tests and benchmarks: one wrapper instead of one per test file.

It never replaces the engine: every call still draws. It notes each call (which styles and seeds,
the requests, when it entered and returned, the steps as the engine reported them) and, where a
test asks, holds calls at a gate (so jobs line up without races), raises a fault instead of one
call, pauses after each step, swaps a call's results, or claims a device the queue then sees.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmpp.inference.engine import Engine, GenerationRequest, GenerationResult, StepProgress
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
        self.steps: list[list[tuple[int, tuple[bool, ...]]]] = []  # per call: (step, active) as the engine saw it
        self.last_step = 0
        self.fault: Fault | None = None
        # A pause after each step, so a test can act between two steps.
        self.step_s = 0.0
        self._gate = threading.Event()
        self._gate.set()

    @property
    def catalog(self) -> StyleCatalog:
        return self.engine.catalog

    @property
    def resolution(self) -> int:
        return self.engine.resolution

    def hold(self) -> None:
        """Engine calls from now on wait (on the GPU thread) until `release`."""
        self._gate = threading.Event()

    def release(self) -> None:
        self._gate.set()

    def generate(
        self, requests: Sequence[GenerationRequest], on_step: Callable[[StepProgress], None] | None = None
    ) -> list[GenerationResult]:
        index = len(self.calls)
        self.calls.append([(r.style, r.seed) for r in requests])
        self.requests.extend(requests)
        self.entered_at.append(time.perf_counter())
        seen: list[tuple[int, tuple[bool, ...]]] = []
        self.steps.append(seen)
        try:
            self._gate.wait(timeout=30)
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
            self.returned_at.append(time.perf_counter())

    def seeds(self) -> list[list[int]]:
        return [[seed for _, seed in call] for call in self.calls]

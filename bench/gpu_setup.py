"""What one `bench/gpu.py` run measures with, shared by bench/gpu.py and bench/gpu_memory.py.

The run's settings (`Bench`: device, dtype, model, styles, steps, batches) and how both scripts build
an engine and time a call. Its own module so that the two scripts import it and not each other.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from mmpp.inference.engine import Engine
from mmpp.inference.loader import load_pipeline
from mmpp.inference.safety import load_safety_checker
from mmpp.inference.speed import SpeedOptions, synchronize
from mmpp.inference.styles import StyleCatalog
from mmpp.model_sources import ModelSources


@dataclass
class Row:
    name: str
    batch: int | None
    seconds: float  # per call (one batch)
    steps: int
    peak_gb: float | None
    note: str = ""

    @property
    def per_image(self) -> float:
        return self.seconds / (self.batch or 1)


@dataclass
class Bench:
    device: torch.device
    dtype: torch.dtype
    size: str
    model_dir: Path | None
    styles_dir: Path
    steps: int
    batches: list[int]
    reps: int
    compile_modes: list[str]
    compile_backend: str

    # --- building -------------------------------------------------------------------------------

    def pipeline(self) -> object:
        if self.model_dir is not None:
            return load_pipeline(ModelSources.from_model_dir(self.model_dir), self.device, self.dtype)
        from mmpp.inference.testing.random_model import build_random_pipeline
        from mmpp.inference.testing.random_spec import FULL

        return build_random_pipeline(FULL, device=self.device, dtype=self.dtype)

    def safety(self) -> object:
        """The engine checks every finished image (plain diffusers does not): part of what it costs."""
        if self.model_dir is not None:
            return load_safety_checker(ModelSources.from_model_dir(self.model_dir).safety_checker, self.device,
                                       self.dtype)
        from mmpp.inference.testing.random_safety import build_random_safety_checker

        return build_random_safety_checker(device=self.device, dtype=self.dtype)

    def engine(self, options: SpeedOptions) -> tuple[Engine, float]:
        """A fresh engine with `options`, and the seconds from nothing to ready (load + compile + warm-up)."""
        release()
        started = time.perf_counter()
        pipe = self.pipeline()
        catalog = StyleCatalog.load(self.styles_dir)
        engine = Engine.assemble(pipe, catalog, options, safety=self.safety())  # type: ignore[arg-type]
        synchronize()
        return engine, time.perf_counter() - started

    def options(self, **switches: object) -> SpeedOptions:
        return replace(
            SpeedOptions(max_batch_size=max(self.batches), compile_backend=self.compile_backend), **switches
        )

    # --- measuring ------------------------------------------------------------------------------

    def measure(self, name: str, fn: Callable[[], object], batch: int, steps: int, note: str = "") -> Row:
        fn()  # first call: allocations, kernel choice (compiled graphs are already warm)
        reset_peak(self.device)
        times = [timed(fn) for _ in range(self.reps)]
        return Row(name, batch, statistics.median(times), steps, peak_gb(self.device), note)


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def timed(fn: Callable[[], object]) -> float:
    synchronize()
    started = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - started

"""What a drawing is asked for and what it gives back, shared by the engine, its speed-ups and the queue.

Its own module so that `mmpp.inference.engine` and `mmpp.inference.speed` both depend on it and not on each
other: the engine uses the speed switches, and the warm-up draws through any engine-like object
(`Drawer`). It imports no torch, diffusers or transformers: a bot that only queues work for remote
workers takes its request types from here and never loads the ML stack.
"""

from __future__ import annotations

import io
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from PIL import Image

from mmpp.errors import CodedError
from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.style_folder import Style
from mmpp.inference.styles import StyleCatalog

if TYPE_CHECKING:
    import torch


# How strictly a finished image is checked (the levels are explained in `mmpp.inference.safety`).
SafetyLevel = Literal["strict", "relaxed"]

PREVIEW_SIZE = 256

class ImageFiltered(CodedError):
    """Raised when something asks for the pixels of a portrait the safety check refused."""

    code = "filtered"


class GenerationCancelled(CodedError):
    code = "cancelled"


def random_seed() -> int:
    """A fresh seed: 31 bits, so it reads the same in every tool that shows or takes one."""
    return secrets.randbelow(2**31)


@dataclass
class GenerationRequest:
    face: PreparedFace
    style: str
    seed: int
    steps: int | None = None
    lora_scale: float | None = None
    background: str | None = None
    framing: str | None = None
    # The style's fast preset (few-step LoRA, its scheduler/steps/guidance); None: the FAST_PRESET setting.
    fast: bool | None = None
    # How strictly the finished image is checked before anyone sees it (see `mmpp.inference.safety`).
    safety: SafetyLevel = "strict"
    # After drawing, measure the portrait against the selfie and redraw one that face matching would
    # tie back to it (see `mmpp.inference.queue.unlinkable`); off where a room wants maximum likeness.
    unlinkable: bool = True
    # The IP-Adapter's weight for this call; None: the style's own. The guard's redraws weaken it.
    ip_adapter_scale: float | None = None
    # Set from any thread to stop this job; the engine looks at it after every denoising step.
    cancel: threading.Event = field(default_factory=threading.Event)


GuardOutcome = Literal["passed", "linkable", "unmeasured", "off"]


@dataclass(frozen=True)
class GenerationResult:
    image: Image.Image | None
    seed: int
    style: str
    cancelled: bool = False
    seconds: float = 0.0
    # The safety check refused the image: `image` is None, so nothing can post it by mistake.
    flagged: bool = False
    # The unlinkable guard was on and even its redraws still match the selfie: the member is told.
    linkable: bool = False
    # What the unlinkable guard made of it (`mmpp.inference.queue.unlinkable`): "passed" (measured, no
    # match), "linkable" (still matches after the redraws), "unmeasured" (it could not measure: may
    # be linkable, the member is told) or "off" (the room or member turned it off; measured anyway).
    guard: GuardOutcome = "off"
    # Face matching may tie it to the selfie (measured so, or not measurable): never posted for the member.
    may_link: bool = False

    def png(self) -> bytes:
        if self.flagged:
            raise ImageFiltered()
        if self.image is None:
            raise ValueError("a cancelled job has no image")
        return to_png(self.image)


class PreviewCheck(Protocol):
    """What a preview needs of the safety check (`mmpp.inference.safety.SafetyChecker`, which imports this
    module for the request types)."""

    def check(self, images: Sequence[Image.Image], levels: Sequence[SafetyLevel]) -> Sequence[Any]: ...


@dataclass
class StepProgress:
    """Handed to `on_step` after each denoising step; previews are made only when asked for."""

    step: int
    total: int
    active: tuple[bool, ...]
    _latents: torch.Tensor
    # A preview is posted like the portrait, so it passes the same check (None: the check is off).
    _safety: PreviewCheck | None = None
    _levels: tuple[SafetyLevel, ...] = ()

    def preview(self, index: int, size: int = PREVIEW_SIZE) -> Image.Image | None:
        """The job's picture so far, or None when the safety check refuses it."""
        # torch comes in here, inside a drawing process only, which has it loaded already.
        from mmpp.inference.preview import latents_to_preview

        image = latents_to_preview(self._latents[index : index + 1], size)[0]
        if self._safety is not None and self._safety.check([image], [self._levels[index]])[0].flagged:
            return None
        return image


def to_png(image: Image.Image) -> bytes:
    """PNG bytes with no text, EXIF or colour-profile chunks."""
    clean = Image.frombytes(image.mode, image.size, image.tobytes())
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


class Drawer(Protocol):
    """What the warm-up needs of an engine."""

    resolution: int

    @property
    def catalog(self) -> StyleCatalog: ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]: ...

    def switch_style(self, style: Style, lora_scale: float | None = None, *, fast: bool = False) -> None: ...

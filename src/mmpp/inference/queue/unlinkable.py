"""The unlinkable guard: a portrait that face matching would tie back to its selfie is drawn again.

Members of anonymous rooms show themselves through their portrait; a stranger with a face-search
tool must not be able to match it to their photo. After the engine draws, the portrait's dlib
descriptor is compared with the selfie's (`mmpp.inference.likeness`); closer than dlib's same-person
threshold, it is redrawn with a new seed and a weaker IP-Adapter (at most `len(REDRAW_IP_FACTORS)`
more tries, inside the same job, so the member's quota does not see them). If every try still
matches, the last (least alike) is delivered marked `linkable`, and the bot tells the member.

Runs on the engine's own thread, on the side that runs the engine, so the local queue and remote
workers alike apply it. The selfie's descriptor comes from the face crop the job already carries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from mmpp.inference import likeness
from mmpp.inference.generation import (
    GenerationCancelled,
    GenerationRequest,
    GenerationResult,
    StepProgress,
    random_seed,
)
from mmpp.logs import log_event

log = logging.getLogger(__name__)

# Each redraw's IP-Adapter scale, as a share of the style's own: the face counts for less each time.
REDRAW_IP_FACTORS = (0.5, 0.25)

Generate = Callable[[Sequence[GenerationRequest], Callable[[StepProgress], None] | None], list[GenerationResult]]


@dataclass(frozen=True)
class Verdict:
    """One drawn portrait judged against its selfie; `selfie` is None when nothing was compared."""

    selfie: likeness.Descriptor | None = None
    measured: likeness.Likeness | None = None

    @property
    def linkable(self) -> bool:
        return self.measured is not None and self.measured.linkable


def judge(request: GenerationRequest, result: GenerationResult) -> Verdict:
    """Whether `result` needs a redraw. Nothing to judge: the guard is off, or there is no image."""
    if not request.unlinkable or result.image is None or result.cancelled:
        return Verdict()
    # The portrait first: most show no face dlib finds, and then the selfie need not be described at all.
    portrait = likeness.descriptor(result.image)
    if portrait is None:
        return Verdict(measured=likeness.Likeness(None))
    selfie = likeness.descriptor(request.face.face, face_crop=True)
    if selfie is None:
        # The crop the engine was given shows no face dlib can describe, so no portrait can be matched to it.
        log_event(log, logging.INFO, "likeness not measured, no face in the crop", style=request.style)
        return Verdict()
    return Verdict(selfie, likeness.Likeness(likeness.distance(selfie, portrait)))


def redraw(
    generate: Generate,
    request: GenerationRequest,
    first: GenerationResult,
    verdict: Verdict,
    style_ip_scale: float,
    on_step: Callable[[StepProgress], None] | None = None,
) -> GenerationResult:
    """Try again until a portrait no longer matches the selfie, or the tries run out (then the least
    alike so far, marked `linkable`). A failed redraw never costs the member the portrait already drawn."""
    assert verdict.selfie is not None and verdict.measured is not None
    best, seconds = first, first.seconds
    distances = [verdict.measured.distance]
    for factor in REDRAW_IP_FACTORS:
        retry = replace(request, seed=random_seed(), ip_adapter_scale=style_ip_scale * factor)
        try:
            [drawn] = generate([retry], on_step)
        except GenerationCancelled:
            return replace(best, image=None, cancelled=True)
        except Exception:
            log.warning("likeness redraw failed, keeping the portrait drawn before", exc_info=True)
            break
        seconds += drawn.seconds
        if drawn.cancelled:
            return drawn
        if drawn.image is None:
            continue  # refused by the safety check: the portrait before it still stands
        measured = likeness.compare(verdict.selfie, drawn.image)
        distances.append(measured.distance)
        if not measured.linkable:
            _logged(request, distances, linkable=False)
            return replace(drawn, seconds=seconds)
        best = drawn
    _logged(request, distances, linkable=True)
    return replace(best, seconds=seconds, linkable=True)


def _logged(request: GenerationRequest, distances: list[float | None], *, linkable: bool) -> None:
    shown = ",".join("none" if d is None else f"{d:.3f}" for d in distances)
    log_event(log, logging.INFO, "portrait redrawn to be unlinkable", style=request.style, tries=len(distances),
              distances=shown, still_linkable=linkable)

"""The unlinkable guard: a portrait that face matching would tie back to its selfie is drawn again.

Members of anonymous rooms show themselves through their portrait; a stranger with a face-search
tool must not be able to match it to their photo. After the engine draws, the portrait's dlib
descriptor is compared with the selfie's (`mmpp.inference.likeness`); closer than dlib's same-person
threshold, it is redrawn with a new seed and a weaker IP-Adapter (at most `len(REDRAW_IP_FACTORS)`
more tries, inside the same job, so the member's quota does not see them). If every try still
matches, the last (least alike) is delivered marked `linkable`, and the bot tells the member.

It fails closed: a portrait it could not measure (no face in the selfie's crop even for the upload's
finder, an error while measuring) is `unmeasured`, may be linkable, and the member is told. With the
guard off the portrait is still measured (never redrawn): a room that posts portraits by default
posts only one shown not to match (`GenerationResult.may_link`).

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
    """One drawn portrait judged against its selfie; `selfie` is None when nothing was compared.
    `unmeasured`: there was a portrait to measure and it could not be (fails closed: may be linkable)."""

    selfie: likeness.Descriptor | None = None
    measured: likeness.Likeness | None = None
    guard: bool = True
    unmeasured: bool = False

    @property
    def linkable(self) -> bool:
        """A redraw is due: the guard is on and the portrait matches its selfie."""
        return self.guard and self.measured is not None and self.measured.linkable

    def settle(self, result: GenerationResult) -> GenerationResult:
        """`result` with what the guard found, for a portrait not redrawn (see `redraw` for the others)."""
        if result.image is None or result.cancelled:
            return result
        may_link = self.unmeasured or (self.measured is not None and self.measured.linkable)
        if not self.guard:
            return replace(result, guard="off", may_link=may_link)
        if self.unmeasured:
            return replace(result, guard="unmeasured", may_link=True)
        return replace(result, guard="linkable" if may_link else "passed", linkable=may_link, may_link=may_link)


def describe_selfie(request: GenerationRequest) -> likeness.Descriptor | None:
    return likeness.descriptor(request.face.face, face_crop=True)


def judge(
    request: GenerationRequest, result: GenerationResult,
    selfie_of: Callable[[GenerationRequest], likeness.Descriptor | None] = describe_selfie,
) -> Verdict:
    """Whether `result` needs a redraw, and whether it may be tied to its selfie. With the guard off it
    is measured all the same (never redrawn): a room that posts by default needs to know. `selfie_of`
    describes the request's selfie (the takes of a set share one: the worker describes it once)."""
    if result.image is None or result.cancelled:
        return Verdict(guard=request.unlinkable)
    # The portrait first: most show no face dlib finds, and then the selfie need not be described at all.
    portrait = likeness.descriptor(result.image)
    if portrait is None:
        return Verdict(measured=likeness.Likeness(None), guard=request.unlinkable)
    selfie = selfie_of(request)
    if selfie is None:
        # Not even the upload's finder sees a face in the crop: nothing says the portrait cannot be matched.
        log_event(log, logging.WARNING, "likeness not measured, no face in the crop", style=request.style)
        return Verdict(guard=request.unlinkable, unmeasured=True)
    return Verdict(selfie, likeness.Likeness(likeness.distance(selfie, portrait)), guard=request.unlinkable)


def unmeasured(request: GenerationRequest) -> Verdict:
    """The verdict when measuring failed: fails closed."""
    return Verdict(guard=request.unlinkable, unmeasured=True)


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
            return replace(drawn, seconds=seconds, guard="passed")
        best = drawn
    _logged(request, distances, linkable=True)
    return replace(best, seconds=seconds, linkable=True, guard="linkable", may_link=True)


def _logged(request: GenerationRequest, distances: list[float | None], *, linkable: bool) -> None:
    shown = ",".join("none" if d is None else f"{d:.3f}" for d in distances)
    log_event(log, logging.INFO, "portrait redrawn to be unlinkable", style=request.style, tries=len(distances),
              distances=shown, still_linkable=linkable)

"""Which of the faces found are people in the photo, and which is the member.

A selfie often shows other faces: a poster on the wall, a photo on a shelf, a reflection, someone
far behind. Those are much smaller than the member's face, which is held at arm's length. A
second person standing beside the member is at most about 1.7 times as far from the camera, so
their face is at least ~0.6 times as wide. The detector also fires weakly on face-like patterns
(a badge, a fold of cloth) at some tilts, so a face it is much less sure of than the best one
does not count at all.

So: the member's face is the largest of the faces scoring at least half the best score; another
face counts as a second person only if it is at least `SECOND_PERSON_SIDE` times as wide and
scores at least `SECOND_PERSON_SCORE` too.
"""

from __future__ import annotations

from mmpp.inference.faces.detect import Face

SECOND_PERSON_SIDE = 0.6
# Of the best face's detector score: below this share, a detection is a pattern, not a face.
CREDIBLE_SHARE = 0.5
# Two people side by side in a usable photo both score well above this; weak misfires score below.
SECOND_PERSON_SCORE = 0.5


def member_face(faces: list[Face]) -> Face | None:
    credible = _credible(faces)
    return max(credible, key=lambda f: f.box.w) if credible else None


def other_people(faces: list[Face]) -> list[Face]:
    """The faces, besides the member's, sure and big enough to be a second person."""
    main = member_face(faces)
    if main is None:
        return []
    return [
        f for f in _credible(faces)
        if f is not main and f.score >= SECOND_PERSON_SCORE and f.box.w >= SECOND_PERSON_SIDE * main.box.w
    ]


def _credible(faces: list[Face]) -> list[Face]:
    if not faces:
        return []
    best = max(f.score for f in faces)
    return [f for f in faces if f.score >= CREDIBLE_SHARE * best]

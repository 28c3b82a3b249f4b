"""Which of the faces found are people in the photo, and which is the member.

A selfie often shows other faces: a poster on the wall, a photo on a shelf, a reflection, someone
far behind. Those are much smaller than the member's face, which is held at arm's length. A
second person standing beside the member is at most about 1.7 times as far from the camera, so
their face is at least ~0.6 times as wide. So: the largest face is the member's, and another face
counts as a second person only if it is at least `SECOND_PERSON_SIDE` times as wide.
"""

from __future__ import annotations

from inference.faces.detect import Face

SECOND_PERSON_SIDE = 0.6


def other_people(faces: list[Face]) -> list[Face]:
    """The faces, besides the largest, big enough to be a second person rather than background."""
    if not faces:
        return []
    main = max(faces, key=lambda f: f.box.w)
    return [f for f in faces if f is not main and f.box.w >= SECOND_PERSON_SIDE * main.box.w]

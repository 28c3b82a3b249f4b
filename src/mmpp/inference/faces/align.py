"""Cut the square a portrait is drawn from, turned so the eyes are level.

The ControlNet and the IP-Adapter were trained on upright faces; a tilted or sideways selfie is
turned upright here, before the edges and the IP-Adapter crop are made from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from mmpp.inference.faces.detect import Box, Face, Point

# Room around the face on each side, as a fraction of its width: hair, ears, the neck. The square
# is twice the face: what a round avatar shows, and a close-up keeps only this, never the whole photo.
CROP_MARGIN = 0.5
# A little more room above the face than below, for hair: a fraction of the face's width.
HAIR_SHIFT = 0.15


@dataclass(frozen=True)
class Landmarks:
    """Where the eyes and the base of the nose are in the upright square: what the person mask is
    seeded from and the IP-Adapter's crop is centred on."""

    left_eye: Point
    right_eye: Point
    nose: Point | None

    def scaled(self, factor: float) -> Landmarks:
        def s(p: Point) -> Point:
            return (p[0] * factor, p[1] * factor)

        return Landmarks(s(self.left_eye), s(self.right_eye), None if self.nose is None else s(self.nose))


def leveling_turn(face: Face) -> float:
    """Degrees counter-clockwise that bring the eyes level. Whole degrees: the eyes' landmarks drift
    by a fraction of a pixel with what surrounds the face, and the same face must give the same square."""
    return -float(round(face.roll))


def aligned_square(
    image: Image.Image, face: Face, max_side: int, margin: float = CROP_MARGIN
) -> tuple[Image.Image, Box, Landmarks]:
    """The square around `face` with eyes level, at most `max_side` pixels, the face's box in it and
    its landmarks.

    The square is shifted to stay inside the photo where it fits; where it does not (a face filling
    the frame), the photo's edge pixels are repeated rather than the face cut off-centre.
    """
    side = face.box.w * (1 + 2 * margin)
    out = max(1, min(max_side, round(side)))
    scale = out / side
    angle = leveling_turn(face)
    radians = math.radians(angle)
    cos, sin = math.cos(radians), math.sin(radians)
    # The square's centre, in the photo: above the face centre along the face's own "up".
    fx, fy = face.center
    up = HAIR_SHIFT * face.box.w
    cx, cy = fx + up * sin, fy - up * cos
    half = side / 2 * (abs(cos) + abs(sin))  # half the turned square's upright extent
    cx = _inside(cx, half, image.width)
    cy = _inside(cy, half, image.height)
    # Only the region under the square is read, shrunk first with area averaging when the square
    # is larger than `max_side` (the rotation's own resampling would alias).
    x0, y0 = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    x1, y1 = min(image.width, math.ceil(cx + half)), min(image.height, math.ceil(cy + half))
    region = np.asarray(image.crop((x0, y0, x1, y1)))
    if scale < 1:
        size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
        region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)

    def to_region(x: float, y: float) -> tuple[float, float]:
        return (x - x0) * min(scale, 1.0), (y - y0) * min(scale, 1.0)

    zoom = max(scale, 1.0)
    rcx, rcy = to_region(cx, cy)
    matrix = cv2.getRotationMatrix2D((rcx, rcy), angle, zoom)
    matrix[0, 2] += out / 2 - rcx
    matrix[1, 2] += out / 2 - rcy
    crop = cv2.warpAffine(region, matrix, (out, out), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)

    def to_square(point: Point) -> Point:
        rx, ry = to_region(*point)
        return (float(matrix[0, 0] * rx + matrix[0, 1] * ry + matrix[0, 2]),
                float(matrix[1, 0] * rx + matrix[1, 1] * ry + matrix[1, 2]))

    face_x, face_y = to_square((fx, fy))
    face_side = face.box.w * scale
    box = Box(round(face_x - face_side / 2), round(face_y - face_side / 2), round(face_side), round(face_side))
    marks = Landmarks(to_square(face.left_eye), to_square(face.right_eye),
                      None if face.nose is None else to_square(face.nose))
    return Image.fromarray(crop), box, marks


def _inside(center: float, half: float, length: int) -> float:
    """Move a centre so [center - half, center + half] lies in [0, length], when that fits at all."""
    if 2 * half > length:
        return center
    return min(max(center, half), length - half)

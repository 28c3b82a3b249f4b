"""What the engine is given from a located face: the person's mask, the structure the ControlNet
follows and the face the IP-Adapter looks at. Nothing of the room behind the member gets through.

A Canny ControlNet traces every edge it is handed and the IP-Adapter copies the look of whatever
image it sees, so a bookshelf behind a member would become the structure and the colours of their
portrait, and two members of one server would get different backgrounds although the server chose
one style. So:

- the person is cut out first (`person_mask`): GrabCut, seeded from the face box and the eyes and
  nose, on a small copy of the square (it needs no weights and takes tens of milliseconds);
- the structure (`structure_map`) is found where the face's detail is, at the square's own
  resolution (faces larger than `STRUCTURE_FACE_PX` are brought down to it), with Canny thresholds
  taken from the face's own gradients, kept only inside the mask, with the mask's outline as the
  head's outline, and drawn at the model's size as thin lines;
- the IP-Adapter gets a tight crop around the eyes (`face_image`), the Plus-face adapter's training
  framing, with everything outside the mask replaced by a neutral grey.

The background of the portrait then comes from the style's prompt alone. Decoding and finding the
face are `mmpp.inference.preprocess` and `mmpp.inference.faces`; this module only reads the square they made.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from mmpp.inference.faces import Box, Landmarks
from mmpp.inference.preprocess import LocatedFace

# What the masked-out parts become in the IP-Adapter's image: mid-grey, the colour CLIP reads as
# "nothing", and what a blank studio wall looks like.
NEUTRAL_GREY = 128
# The IP-Adapter's CLIP encoder looks at 224 px: a larger image is only shrunk to this again, and a
# queued job holds 150 kB for it.
FACE_SIDE = 224
# The IP-Adapter crop: this many face widths on a side, centred this far below the eyes (in face
# widths). Plus-face was trained on tight face crops; this keeps the hairline and the chin.
FACE_CROP_WIDTHS = 1.6
FACE_CROP_BELOW_EYES = 0.1
# dlib's face box puts the eyes this far below its top, in box widths.
EYES_IN_BOX = 0.22
# GrabCut runs on a copy of the square at most this large, three rounds: 30-40 ms of one core, the
# same masks as larger copies and more rounds on bench/conditioning.py, and smooth when scaled up.
MASK_SIDE = 128
GRABCUT_ROUNDS = 3
# GrabCut starts its colour models from k-means with OpenCV's random generator: seeded, the same
# photo gets the same mask on every call and every thread.
GRABCUT_SEED = 1
# The structure is found with the face at most this wide; a larger face's pores and single hairs
# are detail the ControlNet would copy as noise.
STRUCTURE_FACE_PX = 192
# Canny's thresholds from the face's own gradient magnitudes: the upper one at this percentile
# inside the face, the lower a fraction of it. A dim, soft or low-contrast selfie gets the same
# share of its face traced as a crisp one.
HIGH_PERCENTILE = 80
LOW_RATIO = 0.4


@dataclass(frozen=True)
class PreparedFace:
    """What the engine needs from a selfie: the face on a neutral ground for the IP-Adapter
    (`FACE_SIDE` px) and its structure (one-channel lines at the model's size) for the ControlNet.
    `box` is the face within the upright square it was cut from, `source_size` that square's size."""

    face: Image.Image
    control: Image.Image
    box: Box
    source_size: tuple[int, int]


@dataclass(frozen=True)
class Conditioning:
    """A prepared face and how it was made, for `mmpp inspect`."""

    prepared: PreparedFace
    mask: Image.Image  # the person, 255, in the square's pixels
    thresholds: tuple[float, float]  # Canny's lower and upper threshold
    structure_side: int  # the square's side where the structure was found
    face_crop: tuple[int, int, int]  # the IP-Adapter crop in the square: left, top, side

    @property
    def mask_share(self) -> float:
        return float(np.count_nonzero(np.asarray(self.mask))) / (self.mask.width * self.mask.height)

    def face_edge_density(self) -> float:
        """The share of the control map's pixels inside the face box that are lines."""
        control = np.asarray(self.prepared.control)
        box, side = self.prepared.box, self.prepared.source_size[0]
        k = control.shape[0] / side
        inside = control[round(box.y * k): round((box.y + box.h) * k), round(box.x * k): round((box.x + box.w) * k)]
        return float(np.count_nonzero(inside)) / max(1, inside.size)


def prepare(located: LocatedFace, size: int) -> PreparedFace:
    """The engine's inputs for a model drawing `size` x `size` pixels."""
    return condition(located, size).prepared


def condition(located: LocatedFace, size: int) -> Conditioning:
    square = np.asarray(located.image.convert("RGB"))
    marks = located.marks or _guessed_marks(located.box)
    mask = person_mask(square, located.box, marks)
    control, thresholds, structure_side = structure_map(square, mask, located.box, size)
    face, crop = face_image(square, mask, located.box)
    prepared = PreparedFace(face=face, control=control, box=located.box, source_size=located.image.size)
    return Conditioning(prepared, Image.fromarray(mask), thresholds, structure_side, crop)


def _guessed_marks(box: Box) -> Landmarks:
    """Where the eyes usually are in dlib's face box, for a square made without landmarks."""
    y = box.y + EYES_IN_BOX * box.h
    return Landmarks((box.x + 0.3 * box.w, y), (box.x + 0.7 * box.w, y), None)


# --- the person ---------------------------------------------------------------------------------


def person_mask(square: np.ndarray, box: Box, marks: Landmarks) -> np.ndarray:
    """255 where the person is, 0 elsewhere, at the square's size."""
    side = square.shape[0]
    k = min(1.0, MASK_SIDE / side)
    small = cv2.resize(square, (round(side * k),) * 2, interpolation=cv2.INTER_AREA) if k < 1 else square
    seeds = _seeds(small.shape[0], _scaled_box(box, k), marks.scaled(k))
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(GRABCUT_SEED)
    try:
        cv2.grabCut(np.ascontiguousarray(small), seeds, None, background, foreground, GRABCUT_ROUNDS,
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        # Too few pixels of one kind to model (a square mostly face): the outline alone stands.
        pass
    person = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    person = _tidied(person, _scaled_box(box, k))
    if k < 1:
        person = cv2.resize(person.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR) >= 0.5
    return person.astype(np.uint8) * 255


def _seeds(side: int, box: Box, marks: Landmarks) -> np.ndarray:
    """GrabCut's starting labels, in face widths `w` around the face's centre.

    Surely the person: the face's core, the crown just above the brows (forehead or hair for
    everyone), the eyes and the nose. Probably the person: the head with
    room for big hair, the neck and the top of the shoulders. Surely not: everything outside that
    bust, so a room whose colours resemble the member's (a brown shelf behind brown hair, a dark
    window beside a dark collar) cannot pull its far parts in; only the band along the person's
    outline is left to GrabCut's colour models.
    """
    w = box.w
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    rows = np.arange(side)[:, None]
    seeds = np.full((side, side), cv2.GC_BGD, np.uint8)
    _head(seeds, cx, cy, w, (0.92, 1.15), (0.72, 0.8), cv2.GC_PR_BGD)
    bust = [(-0.34, 0.4), (-0.55, 0.72), (-1.3, 1.05), (1.3, 1.05), (0.55, 0.72), (0.34, 0.4)]
    cv2.fillPoly(seeds, [np.array([_pt((cx + dx * w, cy + dy * w)) for dx, dy in bust], np.int32)],
                 cv2.GC_PR_BGD)
    _head(seeds, cx, cy, w, (0.75, 1.0), (0.55, 0.65), cv2.GC_PR_FGD)
    neck = [(-0.3, 0.4), (-0.45, 0.75), (-1.1, 1.05), (1.1, 1.05), (0.45, 0.75), (0.3, 0.4)]
    cv2.fillPoly(seeds, [np.array([_pt((cx + dx * w, cy + dy * w)) for dx, dy in neck], np.int32)],
                 cv2.GC_PR_FGD)
    cv2.ellipse(seeds, _pt((cx, cy - 0.02 * w)), _pt((0.36 * w, 0.5 * w)), 0, 0, 360, cv2.GC_FGD, -1)
    crown = np.zeros_like(seeds)
    cv2.ellipse(crown, _pt((cx, cy - 0.15 * w)), _pt((0.55 * w, 0.8 * w)), 0, 0, 360, 1, -1)
    seeds[(crown > 0) & (rows < cy - 0.2 * w)] = cv2.GC_FGD
    for point in (marks.left_eye, marks.right_eye, marks.nose):
        if point is not None:
            cv2.circle(seeds, _pt(point), max(1, round(0.06 * w)), cv2.GC_FGD, -1)
    return seeds


def _head(seeds: np.ndarray, cx: float, cy: float, w: float, crown: tuple[float, float],
          jaw: tuple[float, float], label: int) -> None:
    """Label a head shape: a wide ellipse (room for hair) above the eyes, a narrower one around the
    jaw below them, where a wide one would reach past the cheeks into the room."""
    shape = np.zeros_like(seeds)
    cv2.ellipse(shape, _pt((cx, cy - 0.2 * w)), _pt((crown[0] * w, crown[1] * w)), 0, 0, 360, 1, -1)
    shape[max(0, round(cy - 0.2 * w)):] = 0
    cv2.ellipse(shape, _pt((cx, cy)), _pt((jaw[0] * w, jaw[1] * w)), 0, 0, 360, 1, -1)
    seeds[shape > 0] = label


def _tidied(person: np.ndarray, box: Box) -> np.ndarray:
    """The one piece holding the face, its holes filled and its specks and threads cut away."""
    cx, cy = round(box.x + box.w / 2), round(box.y + box.h / 2)
    person = cv2.morphologyEx(person, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _, labels = cv2.connectedComponents(person)
    height, width = person.shape
    label = labels[min(max(cy, 0), height - 1), min(max(cx, 0), width - 1)]
    if label == 0:  # the face's centre was cut away: keep what GrabCut found rather than nothing
        return person
    person = (labels == label).astype(np.uint8)
    # Holes: pieces of not-person that do not reach the square's edge (glasses' lenses, an open mouth).
    _, labels = cv2.connectedComponents(1 - person)
    edge = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])).tolist())
    holes = ~np.isin(labels, list(edge)) & (person == 0)
    person[holes] = 1
    return person


def _scaled_box(box: Box, k: float) -> Box:
    return Box(round(box.x * k), round(box.y * k), max(1, round(box.w * k)), max(1, round(box.h * k)))


def _pt(point: tuple[float, float]) -> tuple[int, int]:
    return (round(point[0]), round(point[1]))


# --- the structure ------------------------------------------------------------------------------


def structure_map(
    square: np.ndarray, mask: np.ndarray, box: Box, size: int
) -> tuple[Image.Image, tuple[float, float], int]:
    """Lines of the person at `size` x `size`, black everywhere else; also Canny's thresholds and
    the side at which the lines were found."""
    side = square.shape[0]
    k = min(1.0, STRUCTURE_FACE_PX / max(1, box.w))
    work_side = max(1, round(side * k))
    gray = cv2.cvtColor(square, cv2.COLOR_RGB2GRAY)
    if k < 1:
        gray = cv2.resize(gray, (work_side, work_side), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (work_side, work_side), interpolation=cv2.INTER_NEAREST)
    person = mask > 127
    blurred = cv2.GaussianBlur(gray, (3, 3), 0)
    low, high = _thresholds(blurred, person, _scaled_box(box, k))
    edges = cv2.Canny(blurred, low, high)
    # Edges right at the mask's border belong as much to the room as to the person: the mask's own
    # outline stands for the head's instead, the same whatever is behind it.
    inner = cv2.erode(person.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2)
    edges[inner == 0] = 0
    outline = person.astype(np.uint8) - cv2.erode(person.astype(np.uint8), np.ones((3, 3), np.uint8))
    outline[[0, -1], :] = 0  # where the square cuts the person off is not an outline
    outline[:, [0, -1]] = 0
    lines = np.maximum(edges, outline * 255)
    return _drawn_at(lines, size), (low, high), work_side


def _thresholds(gray: np.ndarray, person: np.ndarray, box: Box) -> tuple[float, float]:
    """Canny's thresholds from the gradients inside the face (L1 magnitude, as Canny measures)."""
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.abs(gx) + np.abs(gy)
    face = np.zeros(gray.shape, np.uint8)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    cv2.ellipse(face, _pt((cx, cy)), _pt((0.5 * box.w, 0.6 * box.h)), 0, 0, 360, 1, -1)
    values = magnitude[(face > 0) & person]
    if values.size < 16:
        values = magnitude[person] if np.count_nonzero(person) >= 16 else magnitude.ravel()
    high = max(float(np.percentile(values, HIGH_PERCENTILE)), 8.0)  # a blank face: no noise traced
    return LOW_RATIO * high, high


def _drawn_at(lines: np.ndarray, size: int) -> Image.Image:
    """The binary line map redrawn at `size`: each traced chain becomes a polyline, so lines stay
    thin (two pixels at SDXL's 1024) instead of growing as thick as one photo pixel."""
    canvas = np.zeros((size, size), np.uint8)
    scale = size / lines.shape[0]
    contours, _ = cv2.findContours((lines > 0).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    shift = 4  # polylines takes fixed-point coordinates with this many fractional bits
    # Straightened within a third of a pixel: a chain of photo pixels drawn larger would be stairs.
    chains = [cv2.approxPolyDP(c, 0.35, False) for c in contours]
    scaled = [np.round(((c.astype(np.float32) + 0.5) * scale - 0.5) * (1 << shift)).astype(np.int32) for c in chains]
    thickness = max(1, round(size / 512))
    cv2.polylines(canvas, scaled, False, 255, thickness, cv2.LINE_8, shift)
    return Image.fromarray(canvas)


# --- the face for the IP-Adapter ------------------------------------------------------------------


def face_image(square: np.ndarray, mask: np.ndarray, box: Box) -> tuple[Image.Image, tuple[int, int, int]]:
    """The face, eyes level and centred, on neutral grey outside the mask; and where it was cut.

    Placed by the face box, not by the eyes' landmarks: the box sits on the detector's grid, so the
    same face in another room gets the same crop to the pixel, where the landmarks drift by half
    a pixel and a crop moved by one pixel changes the image as much as a new background would.
    The square is already turned eyes-level, and the box's top is a fixed distance above the eyes.
    """
    crop_side = max(2, round(FACE_CROP_WIDTHS * box.w))
    left = round(box.x + box.w / 2 - crop_side / 2)
    top = round(box.y + (EYES_IN_BOX + FACE_CROP_BELOW_EYES) * box.w - crop_side / 2)
    # Feathered by a pixel or two of the square so the cut-out does not show a jagged rim.
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), max(0.8, box.w / 100))
    pixels = _cut(square.astype(np.float32), left, top, crop_side, NEUTRAL_GREY)
    alpha = _cut(soft[..., None], left, top, crop_side, 0.0)
    face = pixels * alpha + NEUTRAL_GREY * (1 - alpha)
    interpolation = cv2.INTER_AREA if crop_side > FACE_SIDE else cv2.INTER_CUBIC
    face = cv2.resize(face, (FACE_SIDE, FACE_SIDE), interpolation=interpolation)
    return Image.fromarray(np.clip(np.round(face), 0, 255).astype(np.uint8)), (left, top, crop_side)


def _cut(image: np.ndarray, left: int, top: int, side: int, fill: float) -> np.ndarray:
    """image[top:top+side, left:left+side], filled with `fill` where that reaches past the edge."""
    height, width = image.shape[:2]
    out = np.full((side, side, image.shape[2]), fill, np.float32)
    x0, y0, x1, y1 = max(0, left), max(0, top), min(width, left + side), min(height, top + side)
    if x1 > x0 and y1 > y0:
        out[y0 - top: y1 - top, x0 - left: x1 - left] = image[y0:y1, x0:x1]
    return out

"""Find faces the way people shoot selfies: tilted, sideways, upside down, small in a big photo.

dlib's HOG face detector (compiled into the `dlib-bin` wheel, no weights file) finds faces tilted
up to about ±40 degrees in one pass; its 5-point landmark model (shipped in the
`face_recognition_models` package; dlib's author released it into the public domain, trained on
his own annotations, unlike the 68-point model whose iBUG 300-W data forbids commercial use)
places the eyes, which give the face's roll. The common upright selfie costs one pass on a
1024 px copy; the contrast retry, the rotation search and the small-face pass run only when that
finds nothing.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np
from PIL import Image

# The first pass looks at a copy this long: plenty for a face that fills a selfie, and ~50 ms.
DETECT_LONG_SIDE = 1024
# The HOG window is 80 px; faces a little smaller are found too, but not reliably. Below this in
# the first pass's copy, the small-face pass looks again.
HOG_MIN_FACE = 80
# Orientations tried after an upright miss: sideways phones first, then upside down, then the
# diagonals, which with the detector's own ±40 degrees leave no roll uncovered.
SEARCH_ANGLES = (90, 270, 180, 45, -45, 135, -135)
# Faces too small for the first pass are proposed by OpenCV's Haar cascade (24 px window) on the
# photo halved, so faces from 48 px are seen, then each proposal is checked by the HOG detector on
# an enlarged cut-out; only confirmed faces count. `alt2` is the cascade that proposed every 48 to
# 64 px face of bench/faces.py's small-face rows (`default` missed them in 5 MP photos), and with
# steps of 1.1 between scales rather than 1.2 none falls between two; one neighbour is enough
# to propose (a face at the cascade's smallest size gets few), the HOG check weeds out the rest.
# The pass reads at most this
# many pixels (the 40 MP limit halved); only a bigger limit shrinks the photo further.
SMALL_PASS_PIXELS = 10_000_000
HAAR_MIN_FACE = 24
HAAR_CASCADE = "haarcascade_frontalface_alt2.xml"
HAAR_STEP = 1.1
MAX_PROPOSALS = 24
# The small pass's local equalisation (CLAHE): tiles of about this many pixels of the shrunk photo (a
# four of the cascade's smallest windows, so each proposal is stretched by what lies around it), and
# how far each tile may stretch.
SMALL_PASS_TILE_PX = 96
SMALL_PASS_CLIP = 2.0
# Detections scoring below this are mostly textures and shadows; real faces here score 0.3 to 2.5.
MIN_SCORE = 0.2


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h


Point = tuple[float, float]


@dataclass(frozen=True)
class Face:
    """One face in the image's own pixel coordinates."""

    box: Box  # an upright square of the face's size around its centre
    score: float  # the detector's confidence; higher is surer
    left_eye: Point  # the eye on the image's left when the face is upright
    right_eye: Point
    nose: Point | None = None  # the base of the nose (dlib's fifth point), when the landmarks ran

    @property
    def center(self) -> Point:
        return (self.box.x + self.box.w / 2, self.box.y + self.box.h / 2)

    @property
    def roll(self) -> float:
        """Degrees the face is turned from upright, counter-clockwise as seen; 0 when the eyes are level."""
        dx = self.right_eye[0] - self.left_eye[0]
        dy = self.right_eye[1] - self.left_eye[1]
        return -math.degrees(math.atan2(dy, dx))


_per_thread = threading.local()
_build_lock = threading.Lock()
_built: tuple[bytes, dlib.shape_predictor] | None = None


def _models() -> tuple[dlib.fhog_object_detector, dlib.shape_predictor]:
    """The detector and the landmark model for this thread.

    dlib's detector keeps the image's feature pyramid inside itself while it runs (with the GIL
    released), so each thread needs its own. Building one from dlib's embedded model takes a
    second or more, so it is built once and each thread gets a copy from its serialized form,
    bytes this process made itself (a millisecond). The landmark model only reads its weights
    when it runs, so one is shared.
    """
    global _built
    detector = getattr(_per_thread, "detector", None)
    with _build_lock:
        if _built is None:
            _built = (pickle.dumps(dlib.get_frontal_face_detector()), dlib.shape_predictor(str(landmark_model_path())))
    serialized, landmarks = _built
    if detector is None:
        detector = pickle.loads(serialized)
        _per_thread.detector = detector
    return detector, landmarks


def _cascade() -> cv2.CascadeClassifier:
    cascade = getattr(_per_thread, "cascade", None)
    if cascade is None:
        path = cv2.data.haarcascades + HAAR_CASCADE
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise RuntimeError(f"OpenCV face cascade missing at {path}")
        _per_thread.cascade = cascade
    return cascade


def landmark_model_path() -> Path:
    # Located without importing the package: its __init__ needs pkg_resources, gone from new setuptools.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The face_recognition_models package is missing; reinstall MMPP's dependencies.")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_5_face_landmarks.dat"
    if not path.is_file():
        raise RuntimeError(f"Face landmark model missing at {path}")
    return path


def detect_faces(image: Image.Image, min_face_px: int = 48) -> list[Face]:
    """Faces, largest first, from the first orientation and scale that finds any; [] if none does."""
    gray = np.asarray(image.convert("L"))
    height, width = gray.shape
    # Never enlarged: enlarging a soft photo only blurs the detector's view and adds false faces.
    coarse = min(1.0, DETECT_LONG_SIDE / max(width, height))
    small = _resized(gray, coarse)
    # An over- or under-exposed face shows little contrast: stretched locally, its features come back.
    stretched = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4)).apply(small)
    for view, angle in ((small, 0), (stretched, 0), *((small, a) for a in SEARCH_ANGLES)):
        faces = _detect_rotated(view, angle, coarse)
        if faces:
            return faces
    smallest_seen = HOG_MIN_FACE / coarse
    if smallest_seen > min_face_px:
        return _small_faces(gray, min_face_px, smallest_seen)
    return []


def _small_faces(gray: np.ndarray, min_face_px: int, max_face_px: float) -> list[Face]:
    """Upright faces from `min_face_px` to `max_face_px` wide: cheap Haar proposals, each confirmed
    (and given landmarks) by the HOG detector on a cut-out enlarged to its window size."""
    height, width = gray.shape
    scale = min(1.0, HAAR_MIN_FACE / min_face_px, math.sqrt(SMALL_PASS_PIXELS / (width * height)))
    # Equalised locally, tile by tile: a histogram of the whole frame is ruled by what fills most of
    # it, so a small face before a plain, evenly lit wall was squeezed into a few grey levels and no
    # proposal came; each tile's own stretch keeps the face's contrast whatever surrounds it.
    base = _equalised_locally(_resized(gray, scale))
    largest = max_face_px * scale * 1.3  # in `base`'s pixels
    cascade = _cascade()
    # OpenCV slides the window two pixels at a time while it is under twice the cascade's own
    # size and one at a time beyond, so those big sizes cost four times as much per pixel. Each
    # level stops below that and the next runs on a copy shrunk by the steps it took, which
    # continues the same sizes: the same windows, about 30% less work than one call.
    double = 2 * cascade.getOriginalWindowSize()[0] - 1
    steps = math.ceil(math.log(double / HAAR_MIN_FACE, HAAR_STEP))
    proposals: list[tuple[float, float, float, int]] = []  # centre and side in the photo, neighbours
    shrink = 1.0
    while HAAR_MIN_FACE <= largest * shrink and min(base.shape) * shrink >= HAAR_MIN_FACE:
        level = _resized(base, shrink)
        k = scale * level.shape[1] / base.shape[1]  # the photo's pixels to this level's
        top = min(double, math.ceil(largest * shrink))
        found, neighbours = cascade.detectMultiScale2(level, scaleFactor=HAAR_STEP, minNeighbors=1,
                                                      minSize=(HAAR_MIN_FACE,) * 2, maxSize=(top, top))
        for (x, y, w, _), n in zip(found, np.ravel(neighbours), strict=True):
            proposals.append(((x + w / 2) / k, (y + w / 2) / k, w / k, int(n)))
        shrink /= HAAR_STEP**steps
    # The surest proposals first (most neighbouring windows agree), not the largest: in a busy photo
    # the cap must not drop a small real face for big patterns.
    ranked = sorted(proposals, key=lambda p: (-p[3], -p[2]))
    faces: list[Face] = []
    for cx, cy, side, _ in ranked[:MAX_PROPOSALS]:
        # Room around the proposal: the HOG window sees past the face, and its box then fits the face.
        x0, y0 = max(0, round(cx - 1.5 * side)), max(0, round(cy - 1.5 * side))
        x1, y1 = min(width, round(cx + 1.5 * side)), min(height, round(cy + 1.5 * side))
        zoom = 1.5 * HOG_MIN_FACE / side  # the face about 1.5 windows wide
        for face in _detect_rotated(_resized(gray[y0:y1, x0:x1], zoom), 0, zoom):
            faces.append(_shifted(face, x0, y0))
    return _distinct(faces)


def _equalised_locally(gray: np.ndarray) -> np.ndarray:
    height, width = gray.shape
    grid = (max(1, round(width / SMALL_PASS_TILE_PX)), max(1, round(height / SMALL_PASS_TILE_PX)))
    return cv2.createCLAHE(clipLimit=SMALL_PASS_CLIP, tileGridSize=grid).apply(gray)


def _shifted(face: Face, dx: int, dy: int) -> Face:
    box = Box(face.box.x + dx, face.box.y + dy, face.box.w, face.box.h)
    left = (face.left_eye[0] + dx, face.left_eye[1] + dy)
    right = (face.right_eye[0] + dx, face.right_eye[1] + dy)
    nose = None if face.nose is None else (face.nose[0] + dx, face.nose[1] + dy)
    return Face(box, face.score, left, right, nose)


def _distinct(faces: list[Face]) -> list[Face]:
    """Largest first, dropping a face whose centre lies inside a larger one (overlapping cut-outs)."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: f.box.area, reverse=True):
        cx, cy = face.center
        if not any(k.box.x <= cx <= k.box.x + k.box.w and k.box.y <= cy <= k.box.y + k.box.h for k in kept):
            kept.append(face)
    return kept


def _resized(gray: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1.0) < 1e-3:
        return gray
    height, width = gray.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(gray, size, interpolation=interpolation)


def _detect_rotated(gray: np.ndarray, angle: float, scale: float) -> list[Face]:
    """Detect on `gray` turned `angle` degrees counter-clockwise; map results back to the original
    image (which `gray` shows at `scale`)."""
    height, width = gray.shape
    if angle == 0:
        turned, to_search = gray, np.array([[1.0, 0, 0], [0, 1.0, 0]])
    else:
        # Rotate with the canvas grown to fit, so no part of the photo is cut off.
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
        new_w, new_h = round(width * cos + height * sin), round(width * sin + height * cos)
        matrix[0, 2] += new_w / 2 - width / 2
        matrix[1, 2] += new_h / 2 - height / 2
        turned = cv2.warpAffine(gray, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        to_search = matrix
    back = cv2.invertAffineTransform(to_search) / scale
    detector, landmarks = _models()
    rects, scores, _ = detector.run(turned, 0, MIN_SCORE)
    faces = []
    for rect, score in zip(rects, scores, strict=True):
        points = landmarks(turned, rect).parts()
        left = _mean_point(points[2], points[3], back)
        right = _mean_point(points[0], points[1], back)
        nose = _apply(back, points[4].x, points[4].y)
        cx, cy = _apply(back, (rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2)
        side = rect.width() / scale
        box = Box(round(cx - side / 2), round(cy - side / 2), round(side), round(side))
        faces.append(Face(box, float(score), left, right, nose))
    return sorted(faces, key=lambda f: f.box.area, reverse=True)


def _apply(matrix: np.ndarray, x: float, y: float) -> Point:
    return (float(matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]),
            float(matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]))


def _mean_point(a: dlib.point, b: dlib.point, matrix: np.ndarray) -> Point:
    return _apply(matrix, (a.x + b.x) / 2, (a.y + b.y) / 2)

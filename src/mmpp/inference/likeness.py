"""How much a portrait can be tied to its selfie by face matching: dlib's face descriptor.

dlib's ResNet model (`dlib_face_recognition_resnet_model_v1.dat`, shipped in the
`face_recognition_models` package, public domain) maps an aligned face to 128 numbers; two photos
of one person lie closer than `SAME_PERSON` (0.6, dlib's own threshold, 99.38% on LFW). This is
what a stranger with a face-search tool would run, so it is the yardstick for "unlinkable": a
portrait whose descriptor lies that close to the selfie's could be matched back to the member.

A portrait with no face the detector finds has no descriptor and cannot be matched by it. The
selfie's crop is searched with the upload's own finder (`mmpp.inference.faces`: contrast retry,
rotations), so a dark or tilted selfie the upload accepted is measured too.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np
from PIL import Image, ImageOps

from mmpp.inference.faces import detect_faces, leveling_turn

# dlib's threshold: descriptors of one person lie closer than this.
SAME_PERSON = 0.6
# Faces are looked for on a copy at most this long: a 1024 px portrait's face is far above the
# detector's 80 px window at half size, and the descriptor works on a 150 px aligned chip anyway.
LOOK_SIDE = 512
# Smaller pictures (the tiny test model's 64 px, a thumbnail) are enlarged to this before looking.
MIN_LOOK_SIDE = 256
# A face crop cut tight around the face leaves the detector no margin; padded by this share a side, it finds it.
CROP_PADDING = 0.3

Descriptor = np.ndarray

_lock = threading.Lock()
_models: tuple[dlib.fhog_object_detector, dlib.shape_predictor, dlib.face_recognition_model_v1] | None = None


def model_path(name: str) -> Path:
    # Located without importing the package: its __init__ needs pkg_resources, gone from new setuptools.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The face_recognition_models package is missing; reinstall MMPP's dependencies.")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise RuntimeError(f"Face model missing at {path}")
    return path


def _load() -> tuple[dlib.fhog_object_detector, dlib.shape_predictor, dlib.face_recognition_model_v1]:
    global _models
    if _models is None:
        _models = (
            dlib.get_frontal_face_detector(),
            dlib.shape_predictor(str(model_path("shape_predictor_5_face_landmarks.dat"))),
            dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition_resnet_model_v1.dat"))),
        )
    return _models


@dataclass(frozen=True)
class Likeness:
    """A portrait measured against its selfie. `distance` is None when the portrait shows no face."""

    distance: float | None

    @property
    def linkable(self) -> bool:
        return self.distance is not None and self.distance < SAME_PERSON


def descriptor(image: Image.Image, *, face_crop: bool = False) -> Descriptor | None:
    """The descriptor of the surest face in `image`, or None when there is none.

    `face_crop`: the image is the selfie's crop around one face (what a job carries for the
    IP-Adapter). A miss is retried with the upload's finder on a padded copy (a crop cut tight leaves
    the detector nothing around it), which also tries a contrast stretch and every rotation: a face
    the upload found must be found here too, or the guard could not measure it."""
    rgb = _sized(image)
    found = _describe(rgb)
    if found is None and face_crop:
        pad = round(max(rgb.shape[:2]) * CROP_PADDING)
        found = _describe_found(np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
    return found


def distance(a: Descriptor, b: Descriptor) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def compare(selfie: Descriptor, portrait: Image.Image) -> Likeness:
    found = descriptor(portrait)
    return Likeness(None if found is None else distance(selfie, found))


def _sized(image: Image.Image) -> np.ndarray:
    rgb = image.convert("RGB")
    long_side = max(rgb.size)
    if long_side > LOOK_SIDE:
        rgb = ImageOps.contain(rgb, (LOOK_SIDE, LOOK_SIDE), Image.Resampling.LANCZOS)
    elif long_side < MIN_LOOK_SIDE:
        rgb = ImageOps.contain(rgb, (MIN_LOOK_SIDE, MIN_LOOK_SIDE), Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def _describe(rgb: np.ndarray) -> Descriptor | None:
    # One set of models, used under a lock: the ResNet is not safe to share between threads, and
    # its callers (the engine's thread, a bench) compare one portrait at a time anyway.
    with _lock:
        detector, landmarks, recognizer = _load()
        rects, scores, _ = detector.run(rgb, 0, 0.0)
        if not rects:
            return None
        # The surest face, not the largest: a weak false hit on a collar or a pattern can be bigger.
        rect = rects[max(range(len(rects)), key=lambda i: scores[i])]
        shape = landmarks(rgb, rect)
        return np.asarray(recognizer.compute_face_descriptor(rgb, shape), dtype=np.float64)


def _describe_found(rgb: np.ndarray) -> Descriptor | None:
    """The descriptor of the largest face the upload's finder sees, turned upright first: dlib's
    landmarks and ResNet want an upright face, and a dark one is described as it is (the ResNet
    was trained on all lights; only its finding needed the stretch)."""
    faces = detect_faces(Image.fromarray(rgb), min_face_px=24)
    if not faces:
        return None
    face = faces[0]
    turn = leveling_turn(face)
    if turn:
        # About the face's centre, so its upright box stays where it is.
        matrix = cv2.getRotationMatrix2D(face.center, turn, 1.0)
        rgb = cv2.warpAffine(rgb, matrix, (rgb.shape[1], rgb.shape[0]), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    box = face.box
    rect = dlib.rectangle(box.x, box.y, box.x + box.w, box.y + box.h)
    with _lock:
        _, landmarks, recognizer = _load()
        shape = landmarks(rgb, rect)
        return np.asarray(recognizer.compute_face_descriptor(rgb, shape), dtype=np.float64)

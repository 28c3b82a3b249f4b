"""Face finder benchmark: each candidate detector, and the one the bot uses, on the same photos.

    python bench/faces.py [--n 100] [--cnn-n 20] [--timing-rounds 5] [--skip-cnn] [--small-only]

Photos: the 100 faces of scikit-image's `lfw_subset()` (25 px crops, enlarged to 200 px on a
400 px canvas), the same turned by +30, -30, 90 and 180 degrees, and its 100 non-faces enlarged
the same way. "found" counts photos with at least one detection; for non-faces every detection is
a false face. Time is the median per 1024 px photo on one core: the astronaut (upright face) and
the coffee cup (no face, so every fallback runs). The ratio column is against OpenCV's Haar
cascade, the detector the bot used before, measured in the same run. dlib's CNN takes about a
second a photo on one core, so it sees only the first `--cnn-n` photos of each set. `--n 10
--cnn-n 5 --timing-rounds 3` is the quick mode.

Small faces in big photos: the astronaut shrunk until her face is about 52, 58 or 64 px wide
(dlib's box then measures 48 to 82), pasted at three places into scikit-image's coffee photo
enlarged to 1, 5, 12 and 40 megapixels (the pixel limit); each row counts the photos where the
bot's own face finding (`find_face`, step by step) returns her face, and the median seconds per
photo on one core (target: every face found, under 2 s at 12 MP). The "wall" rows put her before a
plain, evenly lit wall instead (one flat colour with a little sensor noise), which fills nearly the
whole frame: a histogram of the whole frame would squeeze her face into a few grey levels.
`--small-only` prints only these.

Candidates that could not be compared because their weights are not inside a PyPI package, or the
package cannot install beside numpy 2 and torch 2.13, are listed at the end with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/faces.py` puts this folder first on sys.path, where bench/queue.py would shadow the standard
# library's `queue` (asyncio imports it): the folder leaves sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import dlib
import numpy as np
from PIL import Image
from skimage import data as skdata
from tqdm import tqdm

from mmpp.inference.faces import detect_faces
from mmpp.inference.faces.detect import SEARCH_ANGLES, landmark_model_path
from mmpp.inference.preprocess import ImageLimits, ImageRejected, pick_face, square_around

Detector = Callable[[np.ndarray], int]  # an RGB photo in, the number of faces found out

ROTATIONS = (0, 30, -30, 90, 180)
NOT_COMPARED = {
    "YuNet (cv2.FaceDetectorYN)": "its ONNX file is in opencv_zoo, which is not on PyPI; no package ships it",
    "MTCNN (facenet-pytorch 2.6)": "weights ship in the wheel, but it pins torch<2.3, numpy<2 and Pillow<10.3",
    "mediapipe 0.10": "pins numpy<2; newer releases ship no face model",
    "RetinaFace / insightface / uniface": "download their weights at run time; none ship in a wheel",
}


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    """Turned counter-clockwise with the canvas grown to fit, the corners filled with the edge."""
    if degrees == 0:
        return image
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = round(width * cos + height * sin), round(width * sin + height * cos)
    matrix[0, 2] += new_w / 2 - width / 2
    matrix[1, 2] += new_h / 2 - height / 2
    return cv2.warpAffine(image, matrix, (new_w, new_h), borderMode=cv2.BORDER_REPLICATE)


def enlarged(crop: np.ndarray, side: int = 200) -> np.ndarray:
    gray = cv2.resize((crop * 255).astype(np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((side * 2, side * 2), 128, np.uint8)
    canvas[side // 2: side // 2 + side, side // 2: side // 2 + side] = gray
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2RGB)


def haar(image: np.ndarray) -> int:
    """What the bot did before: OpenCV's frontal Haar cascade on an 800 px copy, upright only."""
    scale = min(1.0, 800 / max(image.shape[:2]))
    gray = cv2.cvtColor(cv2.resize(image, None, fx=scale, fy=scale) if scale < 1 else image, cv2.COLOR_RGB2GRAY)
    return len(_haar_cascade.detectMultiScale(cv2.equalizeHist(gray), 1.1, 6, minSize=(20, 20)))


def haar_rotation_search(image: np.ndarray) -> int:
    """The floor: the Haar cascade (about ±15 degrees) tried every 30 degrees until one finds a face."""
    for degrees in range(0, 360, 30):
        found = haar(rotated(image, degrees))
        if found:
            return found
    return 0


def dlib_hog(image: np.ndarray) -> int:
    """dlib's HOG detector alone: one upright pass (its filters cover about ±40 degrees)."""
    scale = min(1.0, 1024 / max(image.shape[:2]))
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return len(_hog(cv2.resize(gray, None, fx=scale, fy=scale) if scale < 1 else gray, 0))


def dlib_cnn(image: np.ndarray) -> int:
    """dlib's MMOD CNN detector (weights in face_recognition_models), one upright pass."""
    scale = min(1.0, 1024 / max(image.shape[:2]))
    small = cv2.resize(image, None, fx=scale, fy=scale) if scale < 1 else image
    return len(_cnn(small, 0))


def chosen(image: np.ndarray) -> int:
    """What the bot uses now (`mmpp.inference.faces.detect_faces`)."""
    return len(detect_faces(Image.fromarray(image)))


@dataclass
class Row:
    name: str
    found: dict[int, float]
    false_faces: float
    upright_s: float
    miss_s: float


def rate(detector: Detector, photos: list[np.ndarray]) -> float:
    return sum(1 for p in photos if detector(p) > 0) / len(photos)


def median_time(detector: Detector, photo: np.ndarray, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        detector(photo)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


SMALL_PHOTOS = {1: (1155, 866), 5: (2582, 1936), 12: (4000, 3000), 40: (7300, 5475)}
SMALL_FACES = (52, 58, 64)
SMALL_PLACES = ((0.2, 0.15), (0.6, 0.3), (0.35, 0.6))
ASTRONAUT_FACE = (178, 82, 88)  # her face's box in the 512 px photo: left, top, width


def small_face_photo(
    megapixels: int, face_px: int, place: tuple[float, float], ground: str = "coffee"
) -> tuple[Image.Image, tuple[float, float]]:
    """A big photo with the astronaut's face about `face_px` wide in it, and that face's centre;
    `ground`: "coffee" (a real scene) or "wall" (plain and evenly lit)."""
    width, height = SMALL_PHOTOS[megapixels]
    if ground == "wall":
        noise = np.random.default_rng(3).normal(0, 3, (height, width, 1))
        flat = np.full((height, width, 3), (205, 200, 190), np.float32) + noise
        photo = Image.fromarray(np.clip(flat, 0, 255).astype(np.uint8))
    else:
        photo = Image.fromarray(skdata.coffee()).resize((width, height), Image.Resampling.BILINEAR)
    side = round(512 * face_px / ASTRONAUT_FACE[2])
    x, y = int(width * place[0]), int(height * place[1])
    photo.paste(Image.fromarray(skdata.astronaut()).resize((side, side), Image.Resampling.LANCZOS), (x, y))
    k = side / 512
    fx, fy, fw = ASTRONAUT_FACE
    return photo, (x + (fx + fw / 2) * k, y + (fy + fw / 2) * k)


def small_faces(rounds: int, quick: bool = False) -> None:
    limits = ImageLimits()
    # --quick: the smallest photo, one face size, one place: the code path, not the figures.
    photos = dict(list(SMALL_PHOTOS.items())[:1]) if quick else SMALL_PHOTOS
    sizes, places = (SMALL_FACES[:1], SMALL_PLACES[:1]) if quick else (SMALL_FACES, SMALL_PLACES)
    print(f"\nsmall faces ({', '.join(map(str, sizes))} px, {len(places)} places each), "
          "the bot's find_face, one core")
    # CPU seconds too: on a shared machine the wall clock counts other programs' turns.
    print(f"{'photo':>13s} {'found':>7s} {'widths found (px)':>24s} {'s/photo':>8s} {'cpu s':>6s}")
    for ground, megapixels in [(g, mp) for g in ("coffee", "wall") for mp in photos]:
        found, widths, times, cpu = 0, [], [], []
        for face_px in sizes:
            for place in places:
                photo, (cx, cy) = small_face_photo(megapixels, face_px, place, ground)
                for _ in range(rounds):
                    started, used = time.perf_counter(), time.process_time()
                    try:  # `find_face`, step by step, to see which face it picked
                        face = pick_face(detect_faces(photo, limits.min_face_px), limits)
                        square_around(photo, face)
                    except ImageRejected:
                        face = None
                    times.append(time.perf_counter() - started)
                    cpu.append(time.process_time() - used)
                if face is not None and abs(face.center[0] - cx) < face.box.w / 2 \
                        and abs(face.center[1] - cy) < face.box.w / 2:
                    found += 1
                    widths.append(face.box.w)
        total = len(sizes) * len(places)
        span = f"{min(widths)}-{max(widths)}" if widths else "-"
        label = f"{megapixels} MP" + (" wall" if ground == "wall" else "")
        print(f"{label:>13s} {found:>3d}/{total:<3d} {span:>24s} {statistics.median(times):8.2f} "
              f"{statistics.median(cpu):6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100, help="faces and non-faces from lfw_subset (max 100)")
    parser.add_argument("--cnn-n", type=int, default=20, help="photos per set for dlib's CNN")
    parser.add_argument("--timing-rounds", type=int, default=5)
    parser.add_argument("--skip-cnn", action="store_true", help="skip dlib's CNN (about a second a photo)")
    parser.add_argument("--small-only", action="store_true", help="only the small-faces-in-big-photos rows")
    parser.add_argument("--quick", action="store_true",
                        help="5 photos per set, no CNN, one timing round, one small-face photo (what CI runs)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.cnn_n, args.timing_rounds, args.skip_cnn = 5, 1, 1, True
    cv2.setNumThreads(1)  # one core, as one upload check gets on the bot
    if args.small_only:
        small_faces(max(1, args.timing_rounds // 5), args.quick)
        return

    lfw = skdata.lfw_subset()
    faces = [enlarged(c) for c in lfw[: min(args.n, 100)]]
    non_faces = [enlarged(c) for c in lfw[100: 100 + min(args.n, 100)]]
    turned = {d: [rotated(f, d) for f in faces] for d in ROTATIONS}
    upright = cv2.resize(skdata.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    no_face = cv2.resize(skdata.coffee(), (1024, 683), interpolation=cv2.INTER_CUBIC)

    candidates: list[tuple[str, Detector]] = [
        ("Haar (before)", haar),
        ("Haar + rotation search", haar_rotation_search),
        ("dlib HOG, one pass", dlib_hog),
    ]
    if not args.skip_cnn:
        candidates.append(("dlib CNN (MMOD), one pass", dlib_cnn))
    candidates.append(("chosen: HOG+search+landmarks", chosen))
    chosen(upright)  # load the models once, outside the timings

    rows = []
    for name, detector in tqdm(candidates, desc="candidates"):
        n = args.cnn_n if detector is dlib_cnn else len(faces)
        found = {d: rate(detector, photos[:n]) for d, photos in turned.items()}
        rows.append(Row(name, found, rate(detector, non_faces[:n]), median_time(detector, upright, args.timing_rounds),
                        median_time(detector, no_face, args.timing_rounds)))

    base = rows[0]
    heads = [f"{d:+d}°" if d else "upright" for d in ROTATIONS]
    print(f"\n{len(faces)} LFW faces per column ({args.cnn_n} for the CNN), {len(non_faces)} non-faces;"
          " times on one core, 1024 px photos")
    print(f"{'detector':30s} " + " ".join(f"{h:>8s}" for h in heads)
          + f" {'false':>6s} {'face s':>8s} {'ratio':>6s} {'no-face s':>9s} {'ratio':>6s}")
    for row in rows:
        print(f"{row.name:30s} " + " ".join(f"{row.found[d]:8.0%}" for d in ROTATIONS)
              + f" {row.false_faces:6.0%} {row.upright_s:8.3f} {row.upright_s / base.upright_s:6.2f}"
              + f" {row.miss_s:9.3f} {row.miss_s / base.miss_s:6.2f}")
    print(f"\nchosen: search order after an upright miss: contrast-stretched, then {SEARCH_ANGLES} degrees")
    print("weights: dlib's HOG detector is compiled into dlib-bin (Boost licence); the 5-point landmark and MMOD")
    print("models in face_recognition_models were released into the public domain by dlib's author (the 68-point")
    print("one, unused, forbids commercial use); OpenCV's Haar cascades carry Intel's BSD-style licence")
    print("\nnot compared:")
    for name, why in NOT_COMPARED.items():
        print(f"  {name}: {why}")
    small_faces(max(1, args.timing_rounds // 5), args.quick)


_haar_cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
_hog = dlib.get_frontal_face_detector()
_cnn = dlib.cnn_face_detection_model_v1(str(landmark_model_path().with_name("mmod_human_face_detector.dat")))

if __name__ == "__main__":
    main()

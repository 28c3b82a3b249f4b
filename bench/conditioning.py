"""Conditioning benchmark: does the room behind a member reach the ControlNet or the IP-Adapter?

    python bench/conditioning.py [--size 1024] [--out DIR]

One real person, scikit-image's astronaut, cut out once with a careful mask
(`bench/assets/astronaut_person.png`: GrabCut with hand-placed seeds on the 512 px photo, checked by
eye; that mask is the ground truth here, never the pipeline's own), is pasted at the same place into
a flat grey room and into busy rooms: a bookshelf (drawn here, with real photo texture on its
spines), scikit-image's immunohistochemistry slide (posters of dense colour detail) and its rocket
photo (a window onto trees, a building and a sky). Each composite goes through what the bot does
(JPEG upload, `locate_face`, then the engine's inputs), once on today's path before this change
(Canny 80/180 on the square after it was resized to the model's size; the IP-Adapter sees that
whole square) and once through `mmpp.inference.conditioning`. Measured:

- room edges: of the control map's line pixels in a busy room, the share with no line in the grey
  room's map within one photo pixel (target <= 5%: the room adds nothing);
- outside the person: the share of line pixels more than one photo pixel outside the true cut-out;
- face detail: the share of line pixels inside the face box, grey room (target >= 2%);
- IP-Adapter change: mean absolute difference of its image between two busy rooms, in 1/255
  (target <= 3), the largest over the pairs;
- mask IoU against the true cut-out, and the time to prepare one face on one core.

`--out DIR` writes each room's composite, control map and IP-Adapter image to look at.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/conditioning.py` puts this folder first on sys.path, where bench/queue.py would shadow the
# standard library's `queue` (asyncio imports it): the folder leaves sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import io
import itertools
import statistics
import time
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
from skimage import data as skdata

from mmpp.inference.conditioning import Conditioning, condition
from mmpp.inference.faces import aligned_square, detect_faces
from mmpp.inference.preprocess import CROP_MAX_SIDE, ImageLimits, LocatedFace, decode_image, pick_face

PERSON_MASK = Path(__file__).resolve().parent / "assets" / "astronaut_person.png"
ROOM_SIDE = 900
# The astronaut's 512 px photo is pasted this much larger, standing on the frame's bottom edge:
# her face is then ~123 px wide, as in a phone selfie shrunk for upload.
PERSON_SCALE = 1.4
GREY = "grey wall"
BUSY = ("bookshelf", "poster wall", "window")


def person() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut (RGB) and her cut-out's mask (0..1 float), at 512 px."""
    mask = np.asarray(Image.open(PERSON_MASK).convert("L"), dtype=np.float32) / 255
    return skdata.astronaut(), mask


def room(name: str, side: int = ROOM_SIDE) -> np.ndarray:
    """An RGB room `side` pixels square."""
    if name == GREY:
        return np.full((side, side, 3), (132, 130, 126), np.uint8)
    if name == "bookshelf":
        return bookshelf(side)
    source = {"poster wall": skdata.immunohistochemistry, "window": skdata.rocket}[name]()
    return cv2.resize(source[:, : min(source.shape[:2])], (side, side), interpolation=cv2.INTER_CUBIC)


def bookshelf(side: int) -> np.ndarray:
    """Shelves of book spines in many colours, each spine textured with a strip of a real photo."""
    rng = np.random.default_rng(21)
    texture = cv2.resize(skdata.chelsea(), (side, side)).astype(np.float32)
    shelf = np.full((side, side, 3), (92, 64, 40), np.uint8)
    for top in range(0, side, 150):
        x = 8
        while x < side - 8:
            width, height = int(rng.integers(14, 46)), int(rng.integers(95, 138))
            colour = rng.integers(30, 235, 3).astype(np.float32)
            y0 = top + 142 - height
            strip = texture[y0: top + 142, x: x + width]
            spine = 0.6 * colour + 0.4 * strip
            spine[:, :2] *= 0.5  # the gap between books
            shelf[y0: top + 142, x: x + width] = np.clip(spine, 0, 255).astype(np.uint8)
            label = y0 + int(rng.integers(15, 50))
            shelf[label: label + 4, x + 3: x + width - 3] = 240
            x += width + int(rng.integers(0, 4))
        shelf[top + 142: top + 150] = (60, 42, 26)
    return shelf


def composite(room_name: str) -> tuple[bytes, np.ndarray]:
    """The person in `room_name` as an uploaded JPEG, and her true mask in the composite (0..1)."""
    rgb, mask = person()
    side = round(rgb.shape[0] * PERSON_SCALE)
    rgb = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    mask = cv2.resize(mask, (side, side), interpolation=cv2.INTER_LINEAR)[..., None]
    canvas = room(room_name).astype(np.float32)
    left, top = (ROOM_SIDE - side) // 2, ROOM_SIDE - side
    region = canvas[top:, left: left + side]
    canvas[top:, left: left + side] = rgb * mask + region * (1 - mask)
    truth = np.zeros((ROOM_SIDE, ROOM_SIDE), np.float32)
    truth[top:, left: left + side] = mask[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=92)
    return buffer.getvalue(), truth


@dataclass
class Prepared:
    """One room through one path: its control map, IP-Adapter image, the true mask in the square."""

    control: np.ndarray
    face: np.ndarray
    truth: np.ndarray  # the true cut-out in the square's pixels, 0..1
    box: tuple[int, int, int, int]  # the face box in the square
    square_side: int
    conditioning: Conditioning | None = None


def located_with_truth(upload: bytes, truth: np.ndarray) -> tuple[LocatedFace, np.ndarray]:
    """What the bot's `locate_face` makes of the upload, and the true mask cut the same way."""
    limits = ImageLimits()
    image = decode_image(upload, limits)
    face = pick_face(detect_faces(image, limits.min_face_px), limits)
    square, box, marks = aligned_square(image, face, CROP_MAX_SIDE)
    truth_image = Image.fromarray((truth * 255).astype(np.uint8)).convert("RGB")
    true_square = np.asarray(aligned_square(truth_image, face, CROP_MAX_SIDE)[0])[..., 0] / 255
    return LocatedFace(square, box, marks), true_square


def before(located: LocatedFace, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Today's path before this change: edges of the whole square resized to `size`, fixed
    thresholds; the IP-Adapter sees the whole square at 448 px."""
    crop = located.square(size)
    gray = cv2.GaussianBlur(cv2.cvtColor(np.asarray(crop), cv2.COLOR_RGB2GRAY), (3, 3), 0)
    face = crop if size <= 448 else crop.resize((448, 448), Image.Resampling.LANCZOS)
    return cv2.Canny(gray, 80, 180), np.asarray(face)


def run_path(upload: bytes, truth: np.ndarray, size: int, after: bool) -> Prepared:
    located, true_square = located_with_truth(upload, truth)
    b = located.box
    if after:
        conditioning = condition(located, size)
        control, face = np.asarray(conditioning.prepared.control), np.asarray(conditioning.prepared.face)
    else:
        conditioning = None
        control, face = before(located, size)
    return Prepared(control, face, true_square, (b.x, b.y, b.w, b.h), located.image.width, conditioning)


def absent_share(busy: Prepared, grey: Prepared) -> float:
    """Of `busy`'s line pixels, the share with no line of `grey` within one photo pixel."""
    reach = max(1, round(busy.control.shape[0] / busy.square_side))
    near = cv2.dilate((grey.control > 0).astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8))
    lines = busy.control > 0
    return float(np.count_nonzero(lines & (near == 0))) / max(1, np.count_nonzero(lines))


def outside_share(p: Prepared) -> float:
    """Of the line pixels, the share more than one photo pixel outside the true cut-out."""
    size = p.control.shape[0]
    truth = cv2.resize(p.truth.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) > 0.5
    reach = max(1, round(size / p.square_side))
    near = cv2.dilate(truth.astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8))
    lines = p.control > 0
    return float(np.count_nonzero(lines & (near == 0))) / max(1, np.count_nonzero(lines))


def face_density(p: Prepared) -> float:
    k = p.control.shape[0] / p.square_side
    x, y, w, h = p.box
    inside = p.control[round(y * k): round((y + h) * k), round(x * k): round((x + w) * k)]
    return float(np.count_nonzero(inside)) / max(1, inside.size)


def face_change(a: Prepared, b: Prepared) -> float:
    return float(np.abs(a.face.astype(np.float32) - b.face.astype(np.float32)).mean())


def mask_iou(p: Prepared) -> float:
    assert p.conditioning is not None
    mine = np.asarray(p.conditioning.mask) > 127
    truth = p.truth > 0.5
    return float(np.count_nonzero(mine & truth)) / max(1, np.count_nonzero(mine | truth))


@dataclass
class Report:
    absent: dict[str, float]  # busy room -> share
    outside: dict[str, float]  # every room -> share
    density: float
    change: float  # largest over busy-room pairs
    change_grey: float  # largest grey vs busy
    iou: dict[str, float]
    seconds: float


def measure(size: int, after: bool, out: Path | None = None) -> Report:
    prepared: dict[str, Prepared] = {}
    times = []
    for name in (GREY, *BUSY):
        upload, truth = composite(name)
        started = time.perf_counter()
        prepared[name] = run_path(upload, truth, size, after)
        times.append(time.perf_counter() - started)
        if out is not None:
            tag = ("after" if after else "before") + "-" + name.replace(" ", "-")
            out.mkdir(parents=True, exist_ok=True)
            Image.open(io.BytesIO(upload)).save(out / f"{name.replace(' ', '-')}.jpg")
            Image.fromarray(prepared[name].control).save(out / f"{tag}-control.png")
            Image.fromarray(prepared[name].face).save(out / f"{tag}-face.png")
    grey = prepared[GREY]
    pairs = list(itertools.combinations(BUSY, 2))
    return Report(
        absent={n: absent_share(prepared[n], grey) for n in BUSY},
        outside={n: outside_share(p) for n, p in prepared.items()},
        density=face_density(grey),
        change=max(face_change(prepared[a], prepared[b]) for a, b in pairs),
        change_grey=max(face_change(grey, prepared[n]) for n in BUSY),
        iou={n: mask_iou(p) for n, p in prepared.items()} if after else {},
        seconds=statistics.median(times),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="the model's drawing size (SDXL: 1024)")
    parser.add_argument("--out", type=Path, default=None, help="write composites, control maps and faces here")
    parser.add_argument("--quick", action="store_true", help="maps at 256 px (what CI runs)")
    args = parser.parse_args()
    if args.quick:
        args.size = 256
    cv2.setNumThreads(1)  # one core, as one upload gets on the bot
    old, new = measure(args.size, after=False, out=args.out), measure(args.size, after=True, out=args.out)

    def pct(v: float) -> str:
        return f"{v:7.1%}"

    print(f"\none person (scikit-image's astronaut, face ~123 px) in a {ROOM_SIDE} px room; maps at {args.size} px")
    print(f"{'measure':58s} {'before':>8s} {'after':>8s}  target")
    for name in BUSY:
        print(f"{'room edges absent from the grey room, ' + name:58s} {pct(old.absent[name])} "
              f"{pct(new.absent[name])}  <= 5%")
    for name in (GREY, *BUSY):
        print(f"{'lines outside the true cut-out, ' + name:58s} {pct(old.outside[name])} {pct(new.outside[name])}")
    print(f"{'line pixels inside the face box, grey room':58s} {pct(old.density)} {pct(new.density)}  >= 2%")
    print(f"{'IP-Adapter image change between busy rooms (max), /255':58s} {old.change:8.1f} {new.change:8.1f}  <= 3")
    print(f"{'IP-Adapter image change grey vs busy room (max), /255':58s} {old.change_grey:8.1f} "
          f"{new.change_grey:8.1f}")
    print(f"{'seconds to prepare one face (median of the rooms)':58s} {old.seconds:8.3f} {new.seconds:8.3f}"
          f"  ({new.seconds / old.seconds:.1f}x)")
    print("mask IoU against the true cut-out, in the square: "
          + ", ".join(f"{n} {v:.2f}" for n, v in new.iou.items()))


if __name__ == "__main__":
    main()

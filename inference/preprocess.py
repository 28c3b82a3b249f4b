"""From uploaded bytes to a square face crop: decode safely, find exactly one face, crop around it.

Every rejection is its own `ImageRejected` subclass whose message a Discord member understands.
The selfie never touches the disk: bytes in, PIL images in memory out, metadata dropped.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmpp.errors import UserFacingError

ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO", "TIFF"}
# The IP-Adapter's CLIP encoder looks at 224 px; twice that keeps every detail it can use while a
# queued job holds 0.6 MB for it instead of 3 MB at SDXL's 1024 px.
IP_ADAPTER_SIDE = 448
# Room around the face on each side, as a fraction of its width: hair, ears, a bit of shoulders.
CROP_MARGIN = 0.7
# A second face at least this fraction of the main face's area is "another person", not background.
SIMILAR_FACE_AREA = 0.4
# Detection runs on a downscaled copy: Haar cascades gain nothing from more pixels, and it keeps
# a 40-megapixel photo from costing seconds.
DETECT_LONG_SIDE = 800


class ImageRejected(UserFacingError):
    """The upload cannot be used; the message says why and what to do."""


class NotAnImage(ImageRejected):
    code = "not_an_image"


class ImageDamaged(ImageRejected):
    code = "image_damaged"


class ImageTooLarge(ImageRejected):
    code = "image_too_large"


class ImageTooSmall(ImageRejected):
    code = "image_too_small"


class NoFaceFound(ImageRejected):
    code = "no_face"


class TooManyFaces(ImageRejected):
    code = "too_many_faces"


class FaceTooSmall(ImageRejected):
    code = "face_too_small"


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 64
    min_face_px: int = 48


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h


@dataclass(frozen=True)
class PreparedFace:
    """What the engine needs from a selfie: the face crop for the IP-Adapter (at most 448 px) and
    its structure (one-channel edges at the model's size) for the ControlNet."""

    face: Image.Image
    control: Image.Image
    box: Box
    source_size: tuple[int, int]


def check_upload_size(size: int, limits: ImageLimits) -> None:
    if size > limits.max_bytes:
        mb = limits.max_bytes // (1024 * 1024)
        raise ImageTooLarge(f"That file is larger than {mb} MB. Please send a smaller photo.")


def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Bytes to an upright RGB image with no metadata, within explicit limits."""
    check_upload_size(len(data), limits)
    if not data:
        raise NotAnImage("That file is empty. Please attach a photo (JPEG, PNG or WebP).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(limits) from None
    except UnidentifiedImageError:
        raise NotAnImage(
            "That file isn't a picture I can read. Please attach a photo (JPEG, PNG or WebP)."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise _damaged() from None
    if image.format not in ACCEPTED_FORMATS:
        raise NotAnImage(
            f"{image.format or 'That'} files aren't supported. Please attach a JPEG, PNG or WebP photo."
        )
    width, height = image.size
    if width * height > limits.max_pixels:
        raise _too_many_pixels(limits, (width, height))
    if min(width, height) < limits.min_side:
        raise ImageTooSmall(
            f"That picture is only {width}x{height} pixels. "
            f"Please send a photo at least {limits.min_side} pixels on each side."
        )
    try:
        image.seek(0)  # animations: the first frame is the photo
        image.load()
        upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError):
        raise _damaged() from None
    rgb = _to_rgb(upright)
    rgb.info = {}
    return rgb


def _damaged() -> ImageDamaged:
    return ImageDamaged("That picture looks damaged or incomplete. Please save it again and send it once more.")


def _too_many_pixels(limits: ImageLimits, size: tuple[int, int] | None = None) -> ImageTooLarge:
    megapixels = limits.max_pixels // 1_000_000
    what = f"{size[0]}x{size[1]} pixels" if size else "too many pixels"
    return ImageTooLarge(
        f"That picture is {what}. Please send one under {megapixels} megapixels, such as a phone photo."
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode to RGB; transparent areas become white rather than black."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "I;16" or image.mode == "I":
        array = np.asarray(image, dtype=np.float32)
        scaled = (255 * (array - array.min()) / max(float(np.ptp(array)), 1.0)).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    return image.convert("RGB")


_per_thread = threading.local()


def _cascade() -> cv2.CascadeClassifier:
    """One classifier per thread: `detectMultiScale` keeps scratch state in the object and releases
    the GIL, so a shared one crashes or mixes up faces when two uploads arrive together."""
    cascade = getattr(_per_thread, "cascade", None)
    if cascade is None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise RuntimeError(f"OpenCV face cascade missing at {path}")
        _per_thread.cascade = cascade
    return cascade


def detect_faces(image: Image.Image) -> list[Box]:
    """Frontal faces, largest first, in the image's own pixel coordinates."""
    scale = min(1.0, DETECT_LONG_SIDE / max(image.size))
    small = image if scale == 1.0 else image.resize(
        (round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR
    )
    gray = cv2.equalizeHist(cv2.cvtColor(np.asarray(small), cv2.COLOR_RGB2GRAY))
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=6, minSize=(20, 20))
    boxes = [
        Box(round(x / scale), round(y / scale), round(w / scale), round(h / scale)) for (x, y, w, h) in found
    ]
    return sorted(boxes, key=lambda b: b.area, reverse=True)


def pick_face(boxes: list[Box], limits: ImageLimits) -> Box:
    if not boxes:
        raise NoFaceFound(
            "I couldn't find a face in that picture. "
            "Please use a photo where your face is clearly visible and looking at the camera."
        )
    main = boxes[0]
    rivals = [b for b in boxes[1:] if b.area >= SIMILAR_FACE_AREA * main.area]
    if rivals:
        raise TooManyFaces(
            f"I found {len(rivals) + 1} faces in that picture. "
            "Please send a photo with only you in it, or crop it to your face."
        )
    if main.w < limits.min_face_px:
        raise FaceTooSmall(
            "Your face is too small in that picture. Please move closer or crop the photo around your face."
        )
    return main


def crop_square(image_size: tuple[int, int], face: Box, margin: float = CROP_MARGIN) -> Box:
    """The square around the face with room for hair and shoulders, shifted inside the image."""
    width, height = image_size
    side = min(round(face.w * (1 + 2 * margin)), width, height)
    cx = face.x + face.w / 2
    cy = face.y + face.h / 2 - 0.1 * face.h  # a little more room above, for hair
    left = int(min(max(cx - side / 2, 0), width - side))
    top = int(min(max(cy - side / 2, 0), height - side))
    return Box(left, top, side, side)


def square_crop(image: Image.Image, face: Box, size: int, margin: float = CROP_MARGIN) -> Image.Image:
    square = crop_square(image.size, face, margin)
    crop = image.crop((square.x, square.y, square.x + square.w, square.y + square.h))
    return crop.resize((size, size), Image.Resampling.LANCZOS)


def edge_map(face: Image.Image) -> Image.Image:
    """Canny edges of the crop: the face's structure for ControlNet, and they need no extra weights."""
    gray = cv2.cvtColor(np.asarray(face), cv2.COLOR_RGB2GRAY)
    blurred = cv2.GaussianBlur(gray, (3, 3), 0)
    # One channel: the ControlNet's image processor makes it RGB at generation time, so a waiting
    # job holds a third of the memory.
    return Image.fromarray(cv2.Canny(blurred, 80, 180))


@dataclass(frozen=True)
class LocatedFace:
    """A checked selfie and where its one face is; cropping waits until the model's size is known."""

    image: Image.Image
    box: Box

    def compact(self, max_side: int = 1024) -> LocatedFace:
        """Only the square the portrait is drawn from, at most `max_side` pixels: what a bot keeps
        for Reroll is a face crop, not the member's whole photo (a 40-megapixel one is 120 MB)."""
        square = crop_square(self.image.size, self.box)
        crop = self.image.crop((square.x, square.y, square.x + square.w, square.y + square.h))
        scale = min(1.0, max_side / square.w)
        if scale < 1.0:
            side = round(square.w * scale)
            crop = crop.resize((side, side), Image.Resampling.LANCZOS)
        box = Box(
            round((self.box.x - square.x) * scale), round((self.box.y - square.y) * scale),
            round(self.box.w * scale), round(self.box.h * scale),
        )
        return LocatedFace(crop, box)

    def prepare(self, size: int) -> PreparedFace:
        crop = square_crop(self.image, self.box, size)
        face = crop if size <= IP_ADAPTER_SIDE else crop.resize((IP_ADAPTER_SIDE,) * 2, Image.Resampling.LANCZOS)
        return PreparedFace(face=face, control=edge_map(crop), box=self.box, source_size=self.image.size)


def locate_face(data: bytes, limits: ImageLimits | None = None) -> LocatedFace:
    """Everything that can reject an upload, and nothing that needs the model: run it before queueing."""
    limits = limits or ImageLimits()
    image = decode_image(data, limits)
    return LocatedFace(image, pick_face(detect_faces(image), limits))


def locate_face_crop(data: bytes, limits: ImageLimits | None = None, max_side: int = 1024) -> LocatedFace:
    """`locate_face`, keeping only the compact crop: what a long-lived holder (the bot) should keep."""
    return locate_face(data, limits).compact(max_side)


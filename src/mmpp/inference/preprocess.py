"""From uploaded bytes to an upright square face crop: decode safely, find exactly one person, crop.

Every rejection is its own `ImageRejected` subclass, a code and the numbers a member needs to act on
it; the bot words it (`mmpp.bot.words.errors`).
The selfie never touches the disk: bytes in, PIL images in memory out, metadata dropped. Finding
and aligning the face lives in `mmpp.inference.faces`; this module decides what a member is told. What
the engine is given from the square (person mask, structure, face crop) is `mmpp.inference.conditioning`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmpp.errors import CodedError
from mmpp.inference.faces import (
    Box,
    Face,
    Landmarks,
    aligned_square,
    detect_faces,
    leveling_turn,
    member_face,
    other_people,
)

# The only readers PIL may try on an upload: each other reader is attack surface for formats no
# phone sends. JPEG covers MPO (phones' multi-picture JPEGs); a GIF gives its first frame.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
# The face square is kept at most this large: SDXL's size, so nothing is upscaled that was sharper.
CROP_MAX_SIDE = 1024


class ImageRejected(CodedError):
    """The upload cannot be used; its code and fields say why, and so what to do."""


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


def check_upload_size(size: int, limits: ImageLimits) -> None:
    if size > limits.max_bytes:
        mb = limits.max_bytes // (1024 * 1024)
        raise ImageTooLarge(mb=mb)


def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Bytes to an upright RGB image with no metadata, within explicit limits."""
    check_upload_size(len(data), limits)
    if not data:
        raise NotAnImage(empty=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(limits) from None
    except UnidentifiedImageError:
        raise NotAnImage() from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise damaged() from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise _too_many_pixels(limits, (width, height))
    if min(width, height) < limits.min_side:
        raise ImageTooSmall(width=width, height=height, side=limits.min_side)
    try:
        image.seek(0)  # animations: the first frame is the photo
        image.load()
        upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError):
        raise damaged() from None
    rgb = _to_rgb(upright)
    rgb.info = {}
    return rgb


def damaged() -> ImageDamaged:
    return ImageDamaged()


def _too_many_pixels(limits: ImageLimits, size: tuple[int, int] | None = None) -> ImageTooLarge:
    megapixels = limits.max_pixels // 1_000_000
    if size is None:
        return ImageTooLarge(megapixels=megapixels)
    return ImageTooLarge(width=size[0], height=size[1], megapixels=megapixels)


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


def pick_face(faces: list[Face], limits: ImageLimits) -> Face:
    """The member's face, or the reason there isn't exactly one usable (see `mmpp.inference.faces.people`)."""
    main = member_face(faces)
    if main is None:
        raise NoFaceFound()
    others = other_people(faces)
    if others:
        raise TooManyFaces(count=len(others) + 1)
    if main.box.w < limits.min_face_px:
        raise FaceTooSmall(width=main.box.w, minimum=limits.min_face_px)
    return main


@dataclass(frozen=True)
class LocatedFace:
    """A checked selfie reduced to the square the portrait is drawn from, eyes level, with where
    the face is in it. The rest of the photo is gone: this is all a holder (the bot's Reroll
    cache, the queue) ever keeps of a member's upload."""

    image: Image.Image
    box: Box
    # The eyes and nose in the square; None for a square made without landmarks (the box then stands in).
    marks: Landmarks | None = None
    # Degrees the photo was turned to level the eyes (counter-clockwise as seen).
    turned: float = 0.0

    def compact(self, max_side: int = CROP_MAX_SIDE) -> LocatedFace:
        """The same square at most `max_side` pixels."""
        scale = max_side / self.image.width
        if scale >= 1.0:
            return self
        side = max(1, round(self.image.width * scale))
        box = Box(round(self.box.x * scale), round(self.box.y * scale), round(self.box.w * scale),
                  round(self.box.h * scale))
        marks = None if self.marks is None else self.marks.scaled(side / self.image.width)
        return LocatedFace(self.image.resize((side, side), Image.Resampling.LANCZOS), box, marks, self.turned)

    def square(self, size: int) -> Image.Image:
        return self.image.resize((size, size), Image.Resampling.LANCZOS)


def find_face(image: Image.Image, limits: ImageLimits) -> LocatedFace:
    """The one face in a decoded photo, cut out upright; raises what a member should be told."""
    return square_around(image, pick_face(detect_faces(image, limits.min_face_px), limits))


def square_around(image: Image.Image, face: Face) -> LocatedFace:
    """The upright square around a face already picked (`find_face` without the search)."""
    crop, box, marks = aligned_square(image, face, CROP_MAX_SIDE)
    return LocatedFace(crop, box, marks, leveling_turn(face))


def locate_face(data: bytes, limits: ImageLimits | None = None) -> LocatedFace:
    """Everything that can reject an upload, and nothing that needs the model: run it before queueing."""
    limits = limits or ImageLimits()
    return find_face(decode_image(data, limits), limits)


def locate_face_crop(data: bytes, limits: ImageLimits | None = None, max_side: int = CROP_MAX_SIDE) -> LocatedFace:
    """`locate_face`, at most `max_side` pixels: what a long-lived holder (the bot) should keep."""
    return locate_face(data, limits).compact(max_side)

"""Bad uploads each get their own friendly error; good ones come out upright, RGB and metadata-free."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from mmpp.inference.engine import Engine, GenerationRequest
from mmpp.inference.preprocess import (
    FaceTooSmall,
    ImageDamaged,
    ImageLimits,
    ImageRejected,
    ImageTooLarge,
    ImageTooSmall,
    NoFaceFound,
    NotAnImage,
    TooManyFaces,
    decode_image,
    detect_faces,
    locate_face,
)
from tests.conftest import encode
from tests.words import raises_worded

LIMITS = ImageLimits()


def huge_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge image; building the pixels for real would need gigabytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(
        b"IEND", b""
    )


def face_crop(astronaut: Image.Image) -> Image.Image:
    box = detect_faces(astronaut)[0].box
    return astronaut.crop((box.x - 40, box.y - 50, box.x + box.w + 40, box.y + box.h + 60))


def test_a_text_file_named_jpg_is_not_an_image() -> None:
    with raises_worded(NotAnImage, "isn't a picture"):
        locate_face(b"hello, this is definitely a selfie\n" * 20)


def test_an_empty_file_is_not_an_image() -> None:
    with raises_worded(NotAnImage, "empty"):
        locate_face(b"")


def test_a_truncated_jpeg_is_damaged(selfie_bytes: bytes) -> None:
    with raises_worded(ImageDamaged, "damaged or incomplete"):
        locate_face(selfie_bytes[: len(selfie_bytes) // 2])


def test_a_20000_by_20000_png_is_refused_before_decoding() -> None:
    with raises_worded(ImageTooLarge, "megapixels"):
        locate_face(huge_png(20000, 20000))


def test_too_many_pixels_for_our_limit_names_the_size() -> None:
    with raises_worded(ImageTooLarge, "9000x5000 pixels"):
        decode_image(huge_png(9000, 5000), LIMITS)


def test_a_file_over_the_byte_limit_is_refused(selfie_bytes: bytes) -> None:
    with raises_worded(ImageTooLarge, "larger than 1 MB"):
        locate_face(selfie_bytes + b"\0" * (1024 * 1024), ImageLimits(max_bytes=1024 * 1024))


def test_a_1x1_image_is_too_small() -> None:
    with raises_worded(ImageTooSmall, "only 1x1 pixels"):
        locate_face(encode(Image.new("RGB", (1, 1)), "PNG"))


def test_an_animated_gif_uses_its_first_frame(astronaut: Image.Image) -> None:
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)) for _ in range(2)]
    gif = encode(astronaut, "GIF", save_all=True, append_images=noise, duration=100, loop=0)
    assert Image.open(io.BytesIO(gif)).n_frames == 3
    assert locate_face(gif).box == locate_face(encode(astronaut, "PNG")).box


def test_an_animated_gif_without_a_face_first_is_no_face(astronaut: Image.Image) -> None:
    blank = Image.new("RGB", (512, 512), (90, 140, 200))
    gif = encode(blank, "GIF", save_all=True, append_images=[astronaut], duration=100)
    with pytest.raises(NoFaceFound):
        locate_face(gif)


def test_a_cmyk_jpeg_with_exif_rotation_is_turned_upright(astronaut: Image.Image) -> None:
    # Orientation 6: "rotate 90° clockwise to display", so the stored pixels lie on their side.
    stored = astronaut.rotate(90, expand=True).convert("CMYK")
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "PhoneMaker"  # metadata that must not survive
    jpeg = encode(stored, "JPEG", exif=exif.tobytes(), quality=95)
    assert Image.open(io.BytesIO(jpeg)).mode == "CMYK"
    image = decode_image(jpeg, LIMITS)
    assert image.mode == "RGB"
    # The same picture the same way up as the original (give or take JPEG and CMYK round-trips).
    original = np.asarray(astronaut, dtype=np.float32)
    assert np.abs(np.asarray(image, dtype=np.float32) - original).mean() < 12
    assert np.abs(np.asarray(stored.convert("RGB"), dtype=np.float32) - original).mean() > 40
    assert not image.info
    assert not image.getexif()
    located = locate_face(jpeg)
    assert not located.image.info and located.image.mode == "RGB"


def test_a_transparent_png_gets_a_white_background(astronaut: Image.Image) -> None:
    rgba = astronaut.convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    image = decode_image(encode(rgba, "PNG"), LIMITS)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_a_photo_without_a_face(name: str) -> None:
    with raises_worded(NoFaceFound, "couldn't find a face"):
        locate_face(encode(getattr(skdata, name)()))


def two_faces(astronaut: Image.Image) -> bytes:
    """The same face pasted twice side by side: two people of similar size."""
    face = face_crop(astronaut)
    canvas = Image.new("RGB", (face.width * 2 + 120, face.height + 80), (200, 200, 200))
    canvas.paste(face, (40, 40))
    canvas.paste(face, (face.width + 80, 40))
    return encode(canvas)


def test_two_faces_of_similar_size_are_refused(astronaut: Image.Image) -> None:
    with raises_worded(TooManyFaces, "found 2 faces"):
        locate_face(two_faces(astronaut))


def test_a_face_too_small_to_draw_from(astronaut: Image.Image) -> None:
    assert detect_faces(astronaut, min_face_px=100), "the face is found at this size"
    with raises_worded(FaceTooSmall, r"only 88 pixels wide in that picture; I need at least 100\."):
        locate_face(encode(astronaut), ImageLimits(min_face_px=100))


def test_every_rejection_has_a_one_sentence_message_and_a_code() -> None:
    for error_type in (NotAnImage, ImageDamaged, ImageTooLarge, ImageTooSmall, NoFaceFound, TooManyFaces,
                       FaceTooSmall):
        assert issubclass(error_type, ImageRejected)
        assert error_type.code not in ("", "error")


def test_the_engine_keeps_working_after_bad_input(engine: Engine, selfie_bytes: bytes) -> None:
    for bad in (b"not an image", huge_png(20000, 20000), selfie_bytes[:500]):
        with pytest.raises(ImageRejected):
            engine.prepare(bad)
    result = engine.generate([GenerationRequest(face=engine.prepare(selfie_bytes), style="tiny-style", seed=1)])
    assert result[0].image is not None


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "ICO", "PPM"])
def test_formats_phones_do_not_send_are_refused_without_trying_their_readers(astronaut: Image.Image, fmt: str) -> None:
    with raises_worded(NotAnImage, r"isn't a picture I can read\. .*\(JPEG, PNG, WebP or GIF\)"):
        locate_face(encode(astronaut.resize((256, 256)), fmt))


@pytest.mark.parametrize("fmt", ["WEBP", "PNG", "GIF", "MPO"])
def test_every_format_the_message_names_is_read(astronaut: Image.Image, fmt: str) -> None:
    extra = {"save_all": True, "append_images": [astronaut]} if fmt == "MPO" else {}
    assert locate_face(encode(astronaut, fmt, **extra)).box.w > 80

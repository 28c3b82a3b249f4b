"""Selfies as people shoot them: tilted, sideways, small, badly lit, soft or crushed by JPEG.

Each photo is built from real faces (scikit-image's astronaut and LFW crops); the face must be
found, and the crop the portrait is drawn from must come out upright, eyes level.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter
from skimage import data as skdata

from mmpp.inference.faces import detect_faces, member_face
from mmpp.inference.faces.people import SECOND_PERSON_SIDE
from mmpp.inference.preprocess import (
    FaceTooSmall,
    LocatedFace,
    NoFaceFound,
    TooManyFaces,
    locate_face,
    locate_face_crop,
)
from tests.conftest import encode
from tests.words import raises_worded


def assert_upright(located: LocatedFace) -> None:
    """The crop shows one face, and its eyes are level within a few degrees."""
    faces = detect_faces(located.image)
    assert len(faces) == 1, faces
    assert abs(faces[0].roll) < 4, f"eyes tilted {faces[0].roll:.1f} degrees in the crop"


def tilted(photo: Image.Image, degrees: float) -> Image.Image:
    """Turned counter-clockwise, the corners filled like a wall behind the subject."""
    return photo.rotate(degrees, expand=True, resample=Image.Resampling.BICUBIC, fillcolor=(120, 120, 110))


@pytest.mark.parametrize("degrees", [-45, -30, -15, -10, 10, 15, 30, 45])
def test_a_tilted_selfie_is_found_and_straightened(astronaut: Image.Image, degrees: int) -> None:
    photo = tilted(astronaut, degrees)
    member = member_face(detect_faces(photo))
    assert member is not None and abs(member.roll - degrees) < 5  # the roll is measured, not guessed
    assert_upright(locate_face(encode(photo)))


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_a_phone_photo_turned_without_exif_is_found_and_stood_up(astronaut: Image.Image, degrees: int) -> None:
    assert_upright(locate_face(encode(astronaut.rotate(degrees, expand=True))))


def test_the_crop_centres_the_face_with_room_around_it(astronaut: Image.Image) -> None:
    located = locate_face(encode(astronaut, "PNG"))
    assert_upright(located)
    face = detect_faces(astronaut)[0]
    assert abs(face.roll) < 4
    # The face is in the middle of the square, half its width, a little below centre (room for hair).
    assert located.box.w == pytest.approx(located.image.width / 2, abs=2)
    assert abs(located.box.x + located.box.w / 2 - located.image.width / 2) < 3
    assert 0 < located.box.y + located.box.h / 2 - located.image.height / 2 < 0.2 * located.box.w


def photo_with_small_face(astronaut: Image.Image, size: tuple[int, int], face_px: float) -> bytes:
    """Her face about `face_px` wide (dlib's box; 88 px in her 512 px photo) in a big real photo."""
    room = Image.fromarray(skdata.coffee()).resize(size, Image.Resampling.BILINEAR)
    side = round(512 * face_px / 88)
    room.paste(astronaut.resize((side, side), Image.Resampling.LANCZOS), (size[0] * 3 // 5, size[1] // 4))
    return encode(room, quality=90)


@pytest.mark.parametrize(
    ("size", "face_px"),
    [((1155, 866), 52), ((2582, 1936), 58), ((4000, 3000), 52), ((2582, 1936), 100)],
    # The last is above the cascade's first level, below what the first pass sees in 5 MP.
    ids=["1 MP", "5 MP", "12 MP", "5 MP, 100 px"],
)
def test_a_face_from_48_px_is_found_in_a_photo_up_to_12_megapixels(
    astronaut: Image.Image, size: tuple[int, int], face_px: int
) -> None:
    located = locate_face(photo_with_small_face(astronaut, size, face_px))
    assert max(48, 0.8 * face_px) <= located.box.w <= max(80, 1.4 * face_px)
    assert_upright(located)


def photo_on_a_plain_wall(astronaut: Image.Image, size: tuple[int, int], face_px: float) -> bytes:
    """The same photo with a plain, evenly lit wall instead of the room: one flat colour with a phone's
    sensor noise, which fills nearly the whole frame."""
    noise = np.random.default_rng(3).normal(0, 3, (size[1], size[0], 1))
    wall = np.clip(np.full((size[1], size[0], 3), (205, 200, 190), np.float32) + noise, 0, 255).astype(np.uint8)
    room = Image.fromarray(wall)
    side = round(512 * face_px / 88)
    room.paste(astronaut.resize((side, side), Image.Resampling.LANCZOS), (size[0] * 3 // 5, size[1] // 4))
    return encode(room, quality=90)


@pytest.mark.parametrize(("size", "face_px"), [((1155, 866), 52), ((2582, 1936), 58)], ids=["1 MP", "5 MP"])
def test_a_small_face_before_a_plain_wall_is_found(astronaut: Image.Image, size: tuple[int, int], face_px: int) -> None:
    """Found as it is before a real scene: the wall must not drown it (the small pass equalises locally)."""
    located = locate_face(photo_on_a_plain_wall(astronaut, size, face_px))
    assert max(48, 0.8 * face_px) <= located.box.w <= max(80, 1.4 * face_px)
    assert_upright(located)


def test_a_face_found_under_48_px_is_refused_saying_how_wide_it_is(astronaut: Image.Image) -> None:
    with raises_worded(FaceTooSmall, r"only 4\d pixels wide in that picture; I need at least 48\."):
        locate_face(photo_with_small_face(astronaut, (1155, 866), 44))


@pytest.mark.parametrize(
    "how",
    ["dark", "over-bright", "grey", "blurred", "jpeg quality 10"],
)
def test_a_poor_photo_still_gives_the_face(astronaut: Image.Image, how: str) -> None:
    photo, quality = astronaut, 92
    if how == "dark":
        photo = ImageEnhance.Brightness(astronaut).enhance(0.1)
    elif how == "over-bright":
        photo = ImageEnhance.Brightness(astronaut).enhance(1.8)
    elif how == "grey":
        photo = astronaut.convert("L")
    elif how == "blurred":
        photo = astronaut.filter(ImageFilter.GaussianBlur(3))
    else:
        quality = 10
    located = locate_face(encode(photo, quality=quality))
    assert 80 <= located.box.w <= 110


def lfw_face(index: int, side: int = 200) -> Image.Image:
    """One of LFW's 25 px face crops, enlarged into a photo with room around the face."""
    face = (skdata.lfw_subset()[index] * 255).astype(np.uint8)
    big = Image.fromarray(face).resize((side, side), Image.Resampling.BICUBIC)
    photo = Image.new("L", (side * 2, side * 2), 128)
    photo.paste(big, (side // 2, side // 2))
    return photo.convert("RGB")


def test_other_real_faces_are_found_tilted_and_turned() -> None:
    for index in (0, 3, 7, 11):
        for degrees in (0, 30, -30, 90, 180):
            located = locate_face(encode(tilted(lfw_face(index), degrees)))
            assert 150 <= located.box.w <= 260, (index, degrees)


def test_scenery_has_no_face_whichever_way_it_is_turned() -> None:
    for name, degrees in (("rocket", 0), ("coffee", 90), ("rocket", 30)):
        with pytest.raises(NoFaceFound):
            locate_face(encode(tilted(Image.fromarray(getattr(skdata, name)()), degrees)))


def with_second_face(astronaut: Image.Image, ratio: float) -> bytes:
    """The member's face large on the left; the same face `ratio` times as wide on the right."""
    head = astronaut.crop((130, 20, 320, 240))  # her head and hair, ~88 px face
    canvas = Image.new("RGB", (1000, 700), (190, 185, 170))
    canvas.paste(head.resize((head.width * 2, head.height * 2)), (40, 60))
    poster = head.resize((round(head.width * 2 * ratio), round(head.height * 2 * ratio)))
    canvas.paste(poster, (600, 80))
    return encode(canvas)


def test_a_poster_on_the_wall_does_not_refuse_a_selfie(astronaut: Image.Image) -> None:
    photo = with_second_face(astronaut, 0.45)
    faces = detect_faces(Image.open(io.BytesIO(photo)))
    assert len(faces) == 2, "both faces are seen; the rule, not the detector, ignores the poster"
    located = locate_face(photo)
    assert located.box.w > 150  # the member's face, not the poster's


def test_a_face_like_pattern_on_a_tilted_selfie_is_neither_the_member_nor_a_second_person(
    astronaut: Image.Image,
) -> None:
    # Tilted 10 to 15 degrees and saved as a JPEG, her suit's badge scores as a weak face as large
    # as hers: the largest face is not always the member's.
    for degrees in (-10, 10, 15):
        photo = encode(astronaut.rotate(degrees, expand=True, fillcolor=(120, 120, 110)), quality=75)
        faces = detect_faces(Image.open(io.BytesIO(photo)))
        assert len(faces) == 2 and min(f.score for f in faces) < 0.5, faces
        located = locate_face(photo)
        assert_upright(located)
        assert 80 <= located.box.w <= 110


def test_two_people_side_by_side_are_refused(astronaut: Image.Image) -> None:
    with raises_worded(TooManyFaces, "found 2 faces"):
        locate_face(with_second_face(astronaut, max(SECOND_PERSON_SIDE + 0.1, 0.8)))


def test_a_close_up_keeps_only_the_face_square_for_reroll(astronaut: Image.Image) -> None:
    # A 900x900 close-up: the face ~380 px, over 40% of the frame's width.
    close_up = astronaut.crop((116, 20, 331, 235)).resize((900, 900), Image.Resampling.LANCZOS)
    kept = locate_face_crop(encode(close_up))
    assert kept.image.width == kept.image.height
    assert 300 <= kept.box.w <= 460
    assert kept.image.width * kept.image.height < 0.8 * 900 * 900
    assert_upright(kept)


def test_uploads_checked_at_once_on_several_threads_each_get_their_own_face(astronaut: Image.Image) -> None:
    """The bot checks uploads on a thread pool; dlib's detector keeps scratch state, so each thread
    must have its own or two photos could swap faces."""
    photos = [encode(tilted(astronaut, degrees)) for degrees in (0, 30, 90, -45)] * 2
    alone = [locate_face(p).box for p in photos]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda p: locate_face(p).box, photos))
    assert together == alone

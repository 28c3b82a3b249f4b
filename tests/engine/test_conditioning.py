"""What the engine gets from a selfie carries the person's face and nothing of their room.

The composites are `bench/conditioning.py`'s: scikit-image's astronaut, cut out once with a mask
checked by eye (the ground truth), pasted into a grey room and into busy ones.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from bench.conditioning import (
    GREY,
    Prepared,
    absent_share,
    composite,
    face_change,
    face_density,
    outside_share,
    run_path,
)
from mmpp.inference.conditioning import FACE_SIDE, NEUTRAL_GREY, condition, prepare
from mmpp.inference.engine import Engine, GenerationRequest
from mmpp.inference.preprocess import LocatedFace, locate_face
from tests.conftest import encode

ROOMS = (GREY, "bookshelf", "window")


@pytest.fixture(scope="module")
def rooms() -> dict[str, Prepared]:
    return {name: run_path(*composite(name), 1024, after=True) for name in ROOMS}


def test_a_busy_room_adds_no_lines_to_the_control_map(rooms: dict[str, Prepared]) -> None:
    for name in ROOMS[1:]:
        assert absent_share(rooms[name], rooms[GREY]) <= 0.05, name
    for name, prepared in rooms.items():
        assert outside_share(prepared) <= 0.01, name  # lines outside the true cut-out


def test_the_face_carries_structure(rooms: dict[str, Prepared]) -> None:
    assert face_density(rooms[GREY]) >= 0.02


def test_the_ip_adapter_sees_the_same_face_whatever_the_room(rooms: dict[str, Prepared]) -> None:
    assert face_change(rooms["bookshelf"], rooms["window"]) <= 3
    assert face_change(rooms[GREY], rooms["bookshelf"]) <= 3


def test_the_person_mask_finds_the_head(rooms: dict[str, Prepared]) -> None:
    """Most of the mask is the true person, and it covers the true head (the square's top half)."""
    for name, prepared in rooms.items():
        assert prepared.conditioning is not None
        mine = np.asarray(prepared.conditioning.mask) > 127
        truth = prepared.truth > 0.5
        assert np.count_nonzero(mine & ~truth) <= 0.03 * np.count_nonzero(mine), name
        top = slice(0, truth.shape[0] // 2)
        assert np.count_nonzero(mine[top] & truth[top]) >= 0.9 * np.count_nonzero(truth[top]), name


def test_a_selfie_gives_lines_only_on_the_person_and_a_face_on_grey(selfie_bytes: bytes) -> None:
    located = locate_face(selfie_bytes)
    made = condition(located, 1024)
    control = np.asarray(made.prepared.control)
    assert control.shape == (1024, 1024) and made.prepared.control.mode == "L"
    assert set(np.unique(control)) <= {0, 255}
    mask = cv2.resize(np.asarray(made.mask), (1024, 1024), interpolation=cv2.INTER_NEAREST) > 127
    near = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert np.count_nonzero(control[~near]) == 0, "a line outside the person"
    assert made.face_edge_density() >= 0.02
    face = np.asarray(made.prepared.face)
    assert face.shape == (FACE_SIDE, FACE_SIDE, 3)
    # Her face in the middle, the room's corners replaced by the neutral grey.
    assert np.abs(face[:12, :12].astype(int) - NEUTRAL_GREY).max() <= 2
    assert face[FACE_SIDE // 2 - 20: FACE_SIDE // 2 + 20].std() > 20


def test_a_dim_flat_selfie_still_gives_its_face_structure(astronaut: Image.Image) -> None:
    """Thresholds follow the face's own contrast: a dark, washed-out photo is traced like a crisp one."""
    dim = ImageEnhance.Contrast(ImageEnhance.Brightness(astronaut).enhance(0.35)).enhance(0.5)
    made = condition(locate_face(encode(dim)), 1024)
    assert made.face_edge_density() >= 0.02


def test_the_same_square_gives_the_same_inputs(selfie_bytes: bytes) -> None:
    located = locate_face(selfie_bytes)
    first, second = prepare(located, 256), prepare(located, 256)
    assert first.face.tobytes() == second.face.tobytes()
    assert first.control.tobytes() == second.control.tobytes()


def test_a_square_kept_without_landmarks_is_still_prepared(selfie_bytes: bytes) -> None:
    located = locate_face(selfie_bytes)
    bare = LocatedFace(located.image, located.box)
    assert face_change_images(prepare(bare, 256).face, prepare(located, 256).face) < 12


def face_change_images(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


def test_the_engine_draws_from_the_conditioned_face(engine: Engine, selfie_bytes: bytes) -> None:
    face = engine.prepare(selfie_bytes)
    assert face.control.size == (engine.resolution, engine.resolution)
    assert face.face.size == (FACE_SIDE, FACE_SIDE)
    result = engine.generate([GenerationRequest(face=face, style="tiny-style", seed=1, steps=2)])[0]
    assert result.image is not None and result.image.size == (engine.resolution, engine.resolution)

"""The likeness yardstick on real photos: the selfie and its variations match it, other pictures do not."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps
from skimage import data as skdata

from mmpp.inference import likeness
from mmpp.inference.engine import Engine, GenerationRequest, GenerationResult
from mmpp.inference.queue.unlinkable import judge
from tests.conftest import encode
from tests.engine.test_faces import lfw_face


@pytest.fixture(scope="module")
def selfie_descriptor(astronaut: Image.Image) -> likeness.Descriptor:
    found = likeness.descriptor(astronaut)
    assert found is not None and found.shape == (128,)
    return found


def variations(photo: Image.Image) -> dict[str, Image.Image]:
    """What someone could post instead of a real portrait: the photo itself, lightly disguised."""
    return {
        "itself": photo,
        "mirrored": ImageOps.mirror(photo),
        "brighter": ImageEnhance.Brightness(photo).enhance(1.5),
        "darker": ImageEnhance.Brightness(photo).enhance(0.6),
        "grey": photo.convert("L"),
        "re-cropped": photo.crop((100, 0, 400, 300)),
        "small crop": photo.crop((150, 30, 350, 230)).resize((160, 160)),
        "big": photo.resize((1024, 1024)),
        # Its JPEG, mirrored, shows a weak false "face" on the suit larger than the real one: the surest counts.
        "jpeg mirrored": ImageOps.mirror(Image.open(io.BytesIO(encode(photo, "JPEG", quality=92))).convert("RGB")),
    }


def test_the_selfie_and_its_variations_are_linkable(astronaut: Image.Image,
                                                    selfie_descriptor: likeness.Descriptor) -> None:
    for name, portrait in variations(astronaut).items():
        measured = likeness.compare(selfie_descriptor, portrait)
        assert measured.linkable, (name, measured)


def test_other_faces_and_faceless_pictures_are_not(selfie_descriptor: likeness.Descriptor) -> None:
    for index in (0, 3, 7, 11):
        measured = likeness.compare(selfie_descriptor, lfw_face(index))
        assert measured.distance is not None and not measured.linkable, (index, measured)
    for name in ("coffee", "rocket", "chelsea"):
        measured = likeness.compare(selfie_descriptor, Image.fromarray(getattr(skdata, name)()))
        # No face, no descriptor: nothing a face search could match.
        assert measured.distance is None and not measured.linkable, name
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert likeness.compare(selfie_descriptor, noise).distance is None


def test_distance_is_symmetric_and_zero_for_one_descriptor(selfie_descriptor: likeness.Descriptor) -> None:
    other = likeness.descriptor(lfw_face(3))
    assert other is not None
    assert likeness.distance(selfie_descriptor, selfie_descriptor) == 0.0
    assert likeness.distance(selfie_descriptor, other) == pytest.approx(likeness.distance(other, selfie_descriptor))


def test_the_guard_judges_from_the_face_crop_the_job_carries(engine: Engine, selfie_bytes: bytes,
                                                             astronaut: Image.Image) -> None:
    """The job has only the IP-Adapter's crop of the selfie, never the photo; that is enough."""
    request = GenerationRequest(face=engine.prepare(selfie_bytes), style="tiny-style", seed=1, steps=2)
    assert request.unlinkable  # on by default
    as_drawn = GenerationResult(image=ImageOps.mirror(astronaut), seed=1, style="tiny-style")
    assert judge(request, as_drawn).linkable
    [drawn_by_the_tiny_model] = engine.generate([request])
    assert drawn_by_the_tiny_model.image is not None and not judge(request, drawn_by_the_tiny_model).linkable
    off = GenerationRequest(face=request.face, style="tiny-style", seed=1, unlinkable=False)
    # Off: never redrawn, but measured all the same, so a room that posts by default will not post it.
    assert not judge(off, as_drawn).linkable
    settled = judge(off, as_drawn).settle(as_drawn)
    assert settled.guard == "off" and settled.may_link and not settled.linkable


@pytest.mark.parametrize("turn", ["dark", "sideways", "tilted"])
def test_a_dark_or_tilted_selfie_crop_the_upright_finder_misses_is_still_measured(
    engine: Engine, selfie_bytes: bytes, astronaut: Image.Image, turn: str
) -> None:
    """The guard looks for the selfie's face with the upload's finder (contrast retry, rotations):
    a crop the upright detector misses must not let its portrait pass unmeasured."""
    from dataclasses import replace

    face = engine.prepare(selfie_bytes)
    crop = face.face
    if turn == "dark":
        # Deep shadow, as a selfie in a dim room: little contrast left, the face still there.
        crop = ImageEnhance.Contrast(ImageEnhance.Brightness(crop).enhance(0.12)).enhance(0.5)
    else:
        crop = crop.rotate(90 if turn == "sideways" else 60, expand=True, fillcolor=(128, 128, 128))
    assert likeness._describe(likeness._sized(crop)) is None, "the upright finder alone misses it"
    request = GenerationRequest(face=replace(face, face=crop), style="tiny-style", seed=1, steps=2)
    verdict = judge(request, GenerationResult(image=ImageOps.mirror(astronaut), seed=1, style="tiny-style"))
    assert not verdict.unmeasured and verdict.linkable, verdict.measured


def test_a_crop_with_no_face_leaves_the_portrait_unmeasured_and_possibly_linkable(
    engine: Engine, selfie_bytes: bytes, astronaut: Image.Image
) -> None:
    from dataclasses import replace

    face = engine.prepare(selfie_bytes)
    blank = Image.new("RGB", face.face.size, (128, 128, 128))
    request = GenerationRequest(face=replace(face, face=blank), style="tiny-style", seed=1, steps=2)
    drawn = GenerationResult(image=ImageOps.mirror(astronaut), seed=1, style="tiny-style")
    verdict = judge(request, drawn)
    assert verdict.unmeasured
    settled = verdict.settle(drawn)
    assert settled.guard == "unmeasured" and settled.may_link and settled.image is not None

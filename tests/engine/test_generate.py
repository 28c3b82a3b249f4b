"""The engine on the tiny model, through the real pipeline: what a member would notice in the output."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmpp.inference.engine import (
    Engine,
    GenerationCancelled,
    GenerationRequest,
    MixedStylesError,
    StepProgress,
    to_png,
)
from mmpp.inference.styles import UnknownStyleError
from mmpp.inference.testing.tiny_model import add_tiny_style
from mmpp.settings import load_settings
from tests.words import raises_worded


def pixels(image: Image.Image | None) -> np.ndarray:
    assert image is not None
    return np.asarray(image, dtype=np.int16)


def request(engine: Engine, selfie: bytes, seed: int, **kwargs: object) -> GenerationRequest:
    return GenerationRequest(face=engine.prepare(selfie), style=kwargs.pop("style", "tiny-style"), seed=seed,
                             **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def two_style_engine(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """An engine with a second style, built in a copy so the shared tiny model stays as it is."""
    model_dir = tmp_path_factory.mktemp("two-styles") / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    add_tiny_style(model_dir, "other-style", seed=99)
    return Engine.from_settings(load_settings(None, model_dir=model_dir, device="cpu", dtype="float32"))


def test_output_is_a_square_rgb_portrait_at_model_resolution(engine: Engine, selfie_bytes: bytes) -> None:
    result = engine.generate([request(engine, selfie_bytes, seed=1)])[0]
    assert result.image is not None
    assert result.image.mode == "RGB"
    assert result.image.size == (engine.resolution, engine.resolution)
    assert not result.cancelled


def test_same_seed_gives_the_same_image(engine: Engine, selfie_bytes: bytes) -> None:
    first = engine.generate([request(engine, selfie_bytes, seed=7)])[0]
    second = engine.generate([request(engine, selfie_bytes, seed=7)])[0]
    assert first.png() == second.png()


def test_another_seed_gives_another_image(engine: Engine, selfie_bytes: bytes) -> None:
    a = engine.generate([request(engine, selfie_bytes, seed=7)])[0]
    b = engine.generate([request(engine, selfie_bytes, seed=8)])[0]
    assert np.abs(pixels(a.image) - pixels(b.image)).mean() > 5


def test_lora_scale_zero_changes_the_image(engine: Engine, selfie_bytes: bytes) -> None:
    styled = engine.generate([request(engine, selfie_bytes, seed=3)])[0]
    unstyled = engine.generate([request(engine, selfie_bytes, seed=3, lora_scale=0.0)])[0]
    assert np.abs(pixels(styled.image) - pixels(unstyled.image)).max() > 3
    # Switching back restores the style exactly: adapters are switched, not reloaded or merged.
    again = engine.generate([request(engine, selfie_bytes, seed=3)])[0]
    assert again.png() == styled.png()


def test_another_style_gives_another_image_and_switching_back_is_exact(
    two_style_engine: Engine, selfie_bytes: bytes
) -> None:
    engine = two_style_engine
    assert set(engine.catalog.names()) == {"tiny-style", "other-style"}
    tiny = engine.generate([request(engine, selfie_bytes, seed=5)])[0]
    other = engine.generate([request(engine, selfie_bytes, seed=5, style="other-style")])[0]
    back = engine.generate([request(engine, selfie_bytes, seed=5)])[0]
    assert np.abs(pixels(tiny.image) - pixels(other.image)).max() > 3
    assert back.png() == tiny.png()


def test_a_server_background_and_framing_change_the_picture(engine: Engine, selfie_bytes: bytes) -> None:
    plain = engine.generate([request(engine, selfie_bytes, seed=9)])[0]
    touched = engine.generate([request(engine, selfie_bytes, seed=9, background="teal", framing="close-up")])[0]
    assert np.abs(pixels(plain.image) - pixels(touched.image)).max() > 3


def test_a_batch_of_two_equals_two_single_runs(engine: Engine, selfie_bytes: bytes, astronaut: Image.Image) -> None:
    from tests.conftest import encode

    mirrored = encode(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    singles = [
        engine.generate([request(engine, selfie_bytes, seed=11)])[0],
        engine.generate([request(engine, mirrored, seed=12, background="teal")])[0],
    ]
    batch = engine.generate(
        [request(engine, selfie_bytes, seed=11), request(engine, mirrored, seed=12, background="teal")]
    )
    for one, batched in zip(singles, batch, strict=True):
        # Equal up to float rounding: batched kernels may sum in another order.
        difference = np.abs(pixels(one.image) - pixels(batched.image))
        assert difference.max() <= 3 and difference.mean() < 0.5


def test_step_callback_reports_every_step_with_previews(engine: Engine, selfie_bytes: bytes) -> None:
    seen: list[tuple[int, int, tuple[int, int]]] = []

    def on_step(progress: StepProgress) -> None:
        seen.append((progress.step, progress.total, progress.preview(0).size))

    engine.generate([request(engine, selfie_bytes, seed=1, steps=5)], on_step=on_step)
    assert [(s, t) for s, t, _ in seen] == [(i, 5) for i in range(1, 6)]
    assert all(size == (256, 256) for _, _, size in seen)


def test_cancel_stops_within_one_step(engine: Engine, selfie_bytes: bytes) -> None:
    job = request(engine, selfie_bytes, seed=1, steps=20)
    steps: list[int] = []

    def on_step(progress: StepProgress) -> None:
        steps.append(progress.step)
        if progress.step == 3:
            job.cancel.set()

    with pytest.raises(GenerationCancelled):
        engine.generate([job], on_step=on_step)
    assert steps == [1, 2, 3]


def test_cancelling_one_job_lets_its_batch_mate_finish(engine: Engine, selfie_bytes: bytes) -> None:
    keep, drop = request(engine, selfie_bytes, seed=1), request(engine, selfie_bytes, seed=2)
    active: list[tuple[bool, ...]] = []

    def on_step(progress: StepProgress) -> None:
        active.append(progress.active)
        if progress.step == 1:
            drop.cancel.set()

    kept, dropped = engine.generate([keep, drop], on_step=on_step)
    alone = engine.generate([request(engine, selfie_bytes, seed=1)])[0]
    assert dropped.cancelled and dropped.image is None
    assert not kept.cancelled
    assert np.abs(pixels(kept.image) - pixels(alone.image)).max() <= 3
    assert active[1:] == [(True, False)] * (len(active) - 1)


def test_a_style_whose_lora_is_broken_is_left_out(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    broken = add_tiny_style(model_dir, "broken-style", seed=5)
    (broken / "lora.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not a safetensors file")
    engine = Engine.from_settings(load_settings(None, model_dir=model_dir, device="cpu", dtype="float32"))
    assert engine.catalog.names() == ["tiny-style"]
    [error] = engine.catalog.errors
    assert error.startswith(f"{broken}: its LoRA could not be loaded")


def test_a_batch_never_mixes_styles(two_style_engine: Engine, selfie_bytes: bytes) -> None:
    engine = two_style_engine
    with pytest.raises(MixedStylesError):
        engine.generate([request(engine, selfie_bytes, seed=1), request(engine, selfie_bytes, seed=1,
                                                                         style="other-style")])


def test_unknown_style_is_a_friendly_error(engine: Engine, selfie_bytes: bytes) -> None:
    with raises_worded(UnknownStyleError, r"no style called 'nope'.*tiny-style"):
        engine.generate([request(engine, selfie_bytes, seed=1, style="nope")])


def test_png_has_no_metadata(astronaut: Image.Image) -> None:
    tagged = astronaut.copy()
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    tagged.info.update(exif=exif.tobytes(), icc_profile=b"\0" * 128, dpi=(300, 300), comment=b"home address")
    png = to_png(tagged)
    assert png.startswith(b"\x89PNG")
    assert b"PhoneMaker" not in png and b"home address" not in png
    chunks = _png_chunk_types(png)
    assert chunks[0] == "IHDR" and chunks[-1] == "IEND"
    assert not {"tEXt", "iTXt", "zTXt", "eXIf", "iCCP", "tIME"} & set(chunks)


def test_generate_runs_off_the_calling_thread(engine: Engine, selfie_bytes: bytes) -> None:
    """The queue runs the engine on a worker thread; nothing in it may be tied to the main thread."""
    out: list[bytes] = []
    thread = threading.Thread(target=lambda: out.append(engine.generate([request(engine, selfie_bytes, 4)])[0].png()))
    thread.start()
    thread.join(timeout=60)
    assert out and out[0] == engine.generate([request(engine, selfie_bytes, 4)])[0].png()


def _png_chunk_types(png: bytes) -> list[str]:
    types, offset = [], 8
    while offset < len(png):
        length = int.from_bytes(png[offset : offset + 4], "big")
        types.append(png[offset + 4 : offset + 8].decode("ascii"))
        offset += 12 + length
    return types

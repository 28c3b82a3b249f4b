"""`mmpp prepare-data`: usable images come out square with captions; the rest is reported, not lost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmpp.cli import main
from mmpp.inference.preprocess import detect_faces
from mmpp.training.data import DataError, load_folder
from mmpp.training.prepare import prepare_data


def _raw_style_folder(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)).save(folder / "wide.jpg")
    Image.fromarray(rng.integers(0, 255, (90, 90, 4), dtype=np.uint8), "RGBA").save(folder / "square.png")
    Image.new("RGB", (20, 20)).save(folder / "tiny.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.new("RGB", (100, 100)).save(folder / "uncaptioned.png")
    (folder / "metadata.jsonl").write_text(
        json.dumps({"file_name": "wide.jpg", "text": "a wide frame"}) + "\n"
        + json.dumps({"file_name": "tiny.png", "text": "too small"}) + "\n"
    )
    (folder / "square.txt").write_text("a square frame\n")
    return folder


def test_style_data_is_center_cropped_and_the_drops_are_reported(tmp_path: Path) -> None:
    source = _raw_style_folder(tmp_path / "raw")
    report = prepare_data(source, tmp_path / "out", kind="style", resolution=64)

    assert report.total == 5 and report.kept == 2
    reasons = {d.file: d.reason for d in report.dropped}
    assert reasons["broken.jpg"] == "not a readable image"
    assert reasons["tiny.png"].startswith("too small: 20x20")
    assert reasons["uncaptioned.png"].startswith("no caption")
    assert "kept 2 of 5 images (dropped 3:" in report.summary()
    examples = load_folder(tmp_path / "out")  # the result is a valid training folder
    assert sorted(e.caption for e in examples) == ["a square frame", "a wide frame"]
    assert all(e.load().size == (64, 64) for e in examples)


def test_a_default_caption_keeps_uncaptioned_images(tmp_path: Path) -> None:
    source = _raw_style_folder(tmp_path / "raw")
    report = prepare_data(source, tmp_path / "out", kind="style", resolution=64, caption="a frame")
    assert report.kept == 3


def test_face_data_is_cropped_around_the_face(tmp_path: Path, astronaut: Image.Image) -> None:
    source = tmp_path / "faces"
    source.mkdir()
    astronaut.save(source / "astronaut.jpg")
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(source / "noise.png")
    report = prepare_data(source, tmp_path / "out", kind="face", resolution=128)
    assert report.kept == 1
    assert [(d.file, d.reason) for d in report.dropped] == [("noise.png", "no face found")]
    (example,) = load_folder(tmp_path / "out")
    assert example.caption == "a photo of a person's face"
    crop = example.load()
    assert crop.size == (128, 128)
    # In the 512 px photo the face is a fifth of the width; in the crop it fills much more.
    (face,) = detect_faces(crop)
    assert face.box.w > 128 * 0.4


def test_nothing_usable_is_an_error(tmp_path: Path) -> None:
    source = tmp_path / "raw"
    source.mkdir()
    (source / "a.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"No usable image .*kept 0 of 1 images \(dropped 1: 1 not a readable image\)"):
        prepare_data(source, tmp_path / "out", kind="style", resolution=64)


def test_cli_lists_each_dropped_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _raw_style_folder(tmp_path / "raw")
    code = main(["prepare-data", str(source), "--output", str(tmp_path / "out"), "--kind", "style",
                 "--resolution", "64"])
    out = capsys.readouterr().out
    assert code == 0
    assert "kept 2 of 5 images" in out
    assert "dropped broken.jpg: not a readable image" in out
    assert main(["prepare-data", str(source), "--output", str(tmp_path / "out"), "--kind", "style"]) == 1
    assert "is not empty" in capsys.readouterr().err

"""Bad data is refused with a message naming what to fix, before any model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from mmpp.cli import main
from mmpp.training.data import DataError, load_examples, load_folder
from tests.training.conftest import write_images


def test_a_captioned_folder_loads_every_image_with_its_caption(style_data: Path) -> None:
    examples = load_examples(str(style_data))
    assert [e.caption for e in examples] == [f"a drawing of thing {i}" for i in range(4)]
    assert examples[0].load().size == (48, 40)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has no images"):
        load_folder(tmp_path)


def test_images_without_a_caption_file(tmp_path: Path) -> None:
    write_images(tmp_path, 2, captions=False)
    with pytest.raises(DataError, match=r"2 images but no metadata\.jsonl"):
        load_folder(tmp_path)


def test_an_image_missing_from_the_captions_is_named(style_data: Path) -> None:
    Image.new("RGB", (40, 40)).save(style_data / "extra.png")
    with pytest.raises(DataError, match=r"1 image\(s\) .* have no caption .*: extra\.png"):
        load_folder(style_data)


def test_caption_file_that_is_not_json_lines_names_the_line(style_data: Path) -> None:
    meta = style_data / "metadata.jsonl"
    lines = meta.read_text().splitlines()
    lines[2] = "file_name,text"
    meta.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"metadata\.jsonl: line 3 is not JSON"):
        load_folder(style_data)


def test_caption_field_missing_suggests_the_option(style_data: Path) -> None:
    meta = style_data / "metadata.jsonl"
    meta.write_text(meta.read_text().replace('"text"', '"caption"'))
    with pytest.raises(DataError, match=r"line 1 has no 'text' field \(fields: caption, file_name\).*--caption-column"):
        load_folder(style_data)
    assert len(load_folder(style_data, caption_column="caption")) == 4


def test_empty_caption_and_missing_file(style_data: Path) -> None:
    meta = style_data / "metadata.jsonl"
    meta.write_text(json.dumps({"file_name": "img0.png", "text": "  "}) + "\n")
    with pytest.raises(DataError, match=r"caption of img0\.png is empty"):
        load_folder(style_data)
    meta.write_text(json.dumps({"file_name": "gone.png", "text": "x"}) + "\n")
    with pytest.raises(DataError, match=r"gone\.png does not exist"):
        load_folder(style_data)


def test_an_image_that_does_not_decode_is_named(style_data: Path) -> None:
    (style_data / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match=r"not images that can be read: img1\.png.*prepare-data"):
        load_folder(style_data)


def test_a_missing_local_path_is_not_taken_for_a_dataset_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_examples(str(tmp_path / "nope"))


def _hub(monkeypatch: pytest.MonkeyPatch, dataset: datasets.Dataset) -> list[tuple]:
    calls: list[tuple] = []

    def fake_load_dataset(name: str, split: str | None = None, **kwargs: object) -> datasets.Dataset:
        calls.append((name, split))
        return dataset

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls


def test_hub_dataset_without_the_named_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    _hub(monkeypatch, datasets.Dataset.from_dict({"img": [np.zeros((8, 8, 3), np.uint8)], "blip": ["a cat"]}))
    with pytest.raises(DataError, match=r"no column 'image' \(columns: img, blip\).*--image-column"):
        load_examples("Norod78/simpsons-blip-captions")
    with pytest.raises(DataError, match=r"no column 'text' .*--caption-column"):
        load_examples("Norod78/simpsons-blip-captions", image_column="img")
    # Without a caption column, --instance-prompt captions every row (the reference scripts' habit).
    examples = load_examples("Norod78/simpsons-blip-captions", image_column="img", caption_column="caption",
                             instance_prompt="a simpsons frame")
    assert [e.caption for e in examples] == ["a simpsons frame"]


def test_hub_dataset_rows_become_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    images = [Image.new("RGB", (24, 16), (i * 40, 0, 0)) for i in range(3)]
    table = datasets.Dataset.from_dict({"image": images, "text": ["a", "b", "c"]}, features=features)
    calls = _hub(monkeypatch, table)
    examples = load_examples("Norod78/simpsons-blip-captions", split="train", limit=2)
    assert calls == [("Norod78/simpsons-blip-captions", "train")]
    assert [e.caption for e in examples] == ["a", "b"]
    assert examples[1].load().getpixel((0, 0)) == (40, 0, 0)


def test_cli_reports_bad_data_in_one_line_without_loading_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    code = main([
        "train", "--data", str(tmp_path / "data"), "--style-name", "x",
        "--output", str(tmp_path / "styles" / "x"), "--model-dir", str(tmp_path / "no-model"),
    ])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("mmpp: ") and "has no images" in err and "\n" not in err


def test_cli_refuses_an_output_folder_not_named_after_the_style(
    style_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([
        "train", "--data", str(style_data), "--style-name", "simpsons", "--output", str(tmp_path / "out"),
        "--model-dir", str(tmp_path),
    ])
    assert code == 1
    assert "--output: must be STYLES_DIR/simpsons" in capsys.readouterr().err

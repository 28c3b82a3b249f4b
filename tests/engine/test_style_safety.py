"""A style folder may come from a stranger: every path it names stays inside it, weights are safetensors
only, and its sample leaves the bot only as freshly encoded pixels."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from mmpp.inference.style_folder import SAMPLE_SIDE, load_style
from mmpp.inference.styles import StyleCatalog


@pytest.fixture
def styles(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A styles folder two levels below a private file an operator keeps next to it."""
    (tmp_path / "bot.env").write_text("DISCORD_TOKEN=secret-token-value\n")
    folder = tmp_path / "data" / "styles"
    shutil.copytree(tiny_model_dir / "styles", folder)
    return folder


def edit(styles: Path, **changes: object) -> Path:
    path = styles / "tiny-style" / "style.json"
    definition = json.loads(path.read_text())
    definition.update(changes)
    path.write_text(json.dumps(definition))
    return path


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sample_image": "../../../bot.env"}, "sample_image"),
        ({"sample_image": "/etc/passwd"}, "sample_image"),
        ({"lora": {"source": "../../../bot.env"}}, "lora.source"),
        ({"lora": {"source": "/etc/passwd"}}, "lora.source"),
        ({"lora": {"source": "sub/../../other/lora.safetensors"}}, "lora.source"),
    ],
)
def test_a_path_leaving_the_style_folder_is_refused_at_load(styles: Path, changes: dict, field: str) -> None:
    path = edit(styles, **changes)
    catalog = StyleCatalog.load(styles)
    assert "tiny-style" not in catalog
    [error] = catalog.errors
    assert error.startswith(f"{path}: field '{field}': ") and "inside the style folder" in error


def test_a_symlink_out_of_the_folder_is_refused_too(styles: Path) -> None:
    folder = styles / "tiny-style"
    (folder / "sample.png").unlink()
    (folder / "sample.png").symlink_to(styles.parent.parent / "bot.env")
    [error] = StyleCatalog.load(styles).errors
    assert "field 'sample_image'" in error
    (folder / "sample.png").unlink()
    (folder / "lora.safetensors").rename(styles.parent.parent / "elsewhere.safetensors")
    (folder / "lora.safetensors").symlink_to(styles.parent.parent / "elsewhere.safetensors")
    edit(styles, sample_image=None)
    [error] = StyleCatalog.load(styles).errors
    assert "field 'lora.source'" in error


@pytest.mark.parametrize(
    ("lora", "field"),
    [
        ({"source": "lora.bin"}, "lora.source"),
        ({"source": "someone/sdxl-lora", "weight_name": "pytorch_lora_weights.bin"}, "lora.weight_name"),
        ({"source": "someone/sdxl-lora", "weight_name": "model.ckpt"}, "lora.weight_name"),
    ],
)
def test_pickled_lora_files_are_refused_in_one_line(styles: Path, lora: dict, field: str) -> None:
    shutil.copy(styles / "tiny-style" / "lora.safetensors", styles / "tiny-style" / "lora.bin")
    path = edit(styles, lora=lora)
    [error] = StyleCatalog.load(styles).errors
    assert error.startswith(f"{path}: field '{field}': ") and "is not a .safetensors file" in error


def test_a_lora_folder_without_safetensors_is_refused_at_load(styles: Path) -> None:
    """Named without a file, the folder would let diffusers pick whatever it holds. Refused when the
    style loads, so a bot whose workers draw (it loads no weights) never offers it either."""
    weights = styles / "tiny-style" / "weights"
    weights.mkdir()
    (styles / "tiny-style" / "lora.safetensors").rename(weights / "pytorch_lora_weights.bin")
    path = edit(styles, lora={"source": "weights"})
    catalog = StyleCatalog.load(styles)
    assert "tiny-style" not in catalog
    [error] = catalog.errors
    assert error.startswith(f"{path}: field 'lora.source': ") and "holds no .safetensors file" in error
    # The same folder with a safetensors file in it is a good style.
    (weights / "pytorch_lora_weights.bin").rename(weights / "pytorch_lora_weights.safetensors")
    assert "tiny-style" in StyleCatalog.load(styles)


def test_a_hub_lora_and_a_safetensors_file_still_load(styles: Path) -> None:
    edit(styles, lora={"source": "someone/sdxl-lora", "weight_name": "style.safetensors"})
    style = load_style(styles / "tiny-style")
    assert style.lora_path == "someone/sdxl-lora"


def test_the_sample_is_reencoded_as_a_plain_png(styles: Path) -> None:
    folder = styles / "tiny-style"
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    Image.new("RGB", (1200, 800), "teal").save(folder / "sample.png", format="JPEG", exif=exif.tobytes())
    png = load_style(folder).sample_png()
    assert png is not None and png.startswith(b"\x89PNG") and b"PhoneMaker" not in png
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and max(image.size) == SAMPLE_SIDE


@pytest.mark.parametrize("content", [b"DISCORD_TOKEN=secret-token-value\n", b"\x89PNG\r\n\x1a\n broken"])
def test_a_sample_that_is_not_a_picture_is_never_sent(styles: Path, content: bytes) -> None:
    folder = styles / "tiny-style"
    (folder / "sample.png").write_bytes(content)
    assert load_style(folder).sample_png() is None


def test_a_huge_sample_is_not_decoded(styles: Path) -> None:
    folder = styles / "tiny-style"
    Image.new("1", (5000, 5000)).save(folder / "sample.png")  # small file, 25 megapixels
    assert load_style(folder).sample_png() is None


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "ICO"])
def test_a_sample_of_another_format_is_left_out_and_the_style_still_loads(
    styles: Path, fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the PNG and JPEG readers may see a stranger's sample: every other Pillow decoder is attack
    surface no style needs. The file is a real picture of its format, named like a PNG."""
    folder = styles / "tiny-style"
    Image.new("RGB", (64, 64), "teal").save(folder / "sample.png", format=fmt)
    style = StyleCatalog.load(styles).get("tiny-style")
    with caplog.at_level("WARNING", logger="mmpp.inference.style_folder"):
        assert style.sample_png() is None
    [record] = [r for r in caplog.records if "sample" in r.getMessage()]
    assert record.fields["file"] == str(folder / "sample.png")
    # ...and a real PNG or JPEG in its place is still shown.
    Image.new("RGB", (64, 64), "teal").save(folder / "sample.png", format="JPEG")
    assert style.sample_png() is not None

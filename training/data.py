"""Training data: find images and captions, check them before any model loads, and turn them into tensors.

Two sources: a local folder in the Hugging Face imagefolder layout (images + `metadata.jsonl` with
`file_name` and a caption field) or a hub dataset with an image and a text column. Every problem
is a `DataError` that names the file, line or column to fix.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset, Sampler

from mmpp.errors import UserFacingError

METADATA_FILE = "metadata.jsonl"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_SHOW = 5  # how many offending files a message lists before "and N more"


class DataError(UserFacingError):
    code = "bad_training_data"


@dataclass(frozen=True)
class Example:
    """One training image and its caption; the image is read only when needed."""

    caption: str
    label: str  # where it came from, for messages: a file path or "dataset row N"
    load: Callable[[], Image.Image] = field(compare=False, repr=False)


@dataclass(frozen=True)
class _FileImage:
    """Picklable (for dataloader workers), unlike a lambda."""

    path: Path

    def __call__(self) -> Image.Image:
        with Image.open(self.path) as image:
            return _rgb(image)


@dataclass(frozen=True)
class _DatasetImage:
    dataset: Any
    index: int
    column: str

    def __call__(self) -> Image.Image:
        value = self.dataset[self.index][self.column]
        if isinstance(value, Image.Image):
            return _rgb(value)
        if isinstance(value, dict) and value.get("bytes"):
            return _rgb(Image.open(io.BytesIO(value["bytes"])))
        if isinstance(value, dict) and value.get("path"):
            value = value["path"]
        if isinstance(value, str):
            with Image.open(value) as image:
                return _rgb(image)
        raise DataError(f"dataset row {self.index}: column '{self.column}' holds {type(value).__name__}, not an image")


def _rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f" and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in
                                                                            p.relative_to(folder).parts)
    )


def read_metadata(folder: Path, caption_column: str) -> dict[str, str]:
    """`metadata.jsonl` as {file_name: caption}; every malformed line is an error naming the line."""
    path = folder / METADATA_FILE
    captions: dict[str, str] = {}
    example = f'{{"file_name": "0001.png", "{caption_column}": "a caption"}}'
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{where} is not JSON ({exc.msg}); each line must be one object like {example}"
                ) from None
            if not isinstance(row, dict):
                raise DataError(f"{where} is not a JSON object; each line must look like {example}")
            name = row.get("file_name")
            if not isinstance(name, str) or not name:
                raise DataError(f"{where} has no 'file_name' field")
            if caption_column not in row:
                fields = ", ".join(sorted(row)) or "none"
                raise DataError(
                    f"{where} has no '{caption_column}' field (fields: {fields}); "
                    "name the caption field with --caption-column"
                )
            caption = row[caption_column]
            if not isinstance(caption, str) or not caption.strip():
                raise DataError(f"{where}: the caption of {name} is empty")
            if name in captions:
                raise DataError(f"{where}: {name} is listed twice")
            if not (folder / name).is_file():
                raise DataError(f"{where}: {name} does not exist in {folder}")
            captions[name] = caption.strip()
    return captions


def _check_decodes(paths: Sequence[Path]) -> None:
    """Reading headers is cheap and spares a crash hours into training."""
    broken: list[str] = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            broken.append(path.name)
    if broken:
        raise DataError(
            f"{len(broken)} file(s) are not images that can be read: {_listing(broken)}. "
            "`mmpp prepare-data` drops such files and reports them."
        )


def load_folder(folder: Path, caption_column: str = "text") -> list[Example]:
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    images = image_files(folder)
    has_metadata = (folder / METADATA_FILE).is_file()
    if not images:
        raise DataError(f"{folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if not has_metadata:
        hint = " (metadata.csv is not read; convert it to JSON lines)" if (folder / "metadata.csv").exists() else ""
        raise DataError(
            f"{folder} has {len(images)} images but no {METADATA_FILE} with their captions{hint}. "
            f'Each line should look like {{"file_name": "0001.png", "{caption_column}": "a caption"}}.'
        )
    captions = read_metadata(folder, caption_column)
    uncaptioned = [p.relative_to(folder).as_posix() for p in images if p.relative_to(folder).as_posix()
                   not in captions]
    if uncaptioned:
        raise DataError(
            f"{len(uncaptioned)} image(s) in {folder} have no caption in {METADATA_FILE}: {_listing(uncaptioned)}"
        )
    paths = [folder / name for name in captions]
    _check_decodes(paths)
    return [Example(caption, str(path), _FileImage(path)) for (name, caption), path in
            zip(captions.items(), paths, strict=True)]


def load_hub_dataset(
    name: str, *, split: str = "train", image_column: str = "image", caption_column: str = "text"
) -> list[Example]:
    import datasets

    try:
        dataset = datasets.load_dataset(name, split=split)
    except (FileNotFoundError, ConnectionError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"Could not load the dataset '{name}' (split '{split}'): {first}. "
            "DATA is a local folder or a Hugging Face dataset name."
        ) from exc
    return examples_from_dataset(dataset, name=name, image_column=image_column, caption_column=caption_column)


def examples_from_dataset(
    dataset: Any, *, name: str, image_column: str = "image", caption_column: str = "text"
) -> list[Example]:
    columns = list(dataset.column_names)
    for column, option in ((image_column, "--image-column"), (caption_column, "--caption-column")):
        if column not in columns:
            raise DataError(
                f"Dataset '{name}' has no column '{column}' (columns: {', '.join(columns)}); choose one with {option}"
            )
    if len(dataset) == 0:
        raise DataError(f"Dataset '{name}' is empty")
    captions = dataset[caption_column]
    missing = [str(i) for i, c in enumerate(captions) if not isinstance(c, str) or not c.strip()]
    if missing:
        raise DataError(f"Dataset '{name}': {len(missing)} row(s) have no caption in '{caption_column}': "
                        f"rows {_listing(missing)}")
    return [
        Example(caption.strip(), f"{name} row {i}", _DatasetImage(dataset, i, image_column))
        for i, caption in enumerate(captions)
    ]


def load_examples(
    data: str,
    *,
    image_column: str = "image",
    caption_column: str = "text",
    split: str = "train",
    limit: int | None = None,
) -> list[Example]:
    """A local folder if DATA names one, else a hub dataset name (owner/name)."""
    path = Path(data).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DataError(f"{data} is a file; DATA must be a folder of images or a dataset name")
        examples = load_folder(path, caption_column)
    elif data.startswith((".", "/", "~")) or data.count("/") > 1 or "\\" in data:
        raise DataError(f"{data} does not exist")
    else:
        examples = load_hub_dataset(data, split=split, image_column=image_column, caption_column=caption_column)
    return examples[:limit] if limit else examples


def load_prior_folder(folder: Path, class_prompt: str) -> list[Example]:
    """Class images (faces, e.g. SFHQ) for prior preservation; they all share the class prompt."""
    if not folder.is_dir():
        raise DataError(f"--prior-data: {folder} is not a folder")
    images = image_files(folder)
    if not images:
        raise DataError(f"--prior-data: {folder} has no images")
    _check_decodes(images)
    return [Example(class_prompt, str(p), _FileImage(p)) for p in images]


# --- tensors -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transform:
    """Resize the short side, crop a square, maybe mirror: decided once per image by its seed.

    Fixing the crop and flip per image keeps cached latents and time ids true to the pixels.
    """

    resolution: int
    center_crop: bool = False
    random_flip: bool = False
    seed: int = 0

    def __call__(self, image: Image.Image, index: int) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        rng = random.Random(self.seed * 1_000_003 + index)
        original = (image.height, image.width)
        scale = self.resolution / min(image.size)
        size = (max(self.resolution, round(image.width * scale)), max(self.resolution, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
        if self.random_flip and rng.random() < 0.5:
            image = ImageOps.mirror(image)
        if self.center_crop:
            top = round((image.height - self.resolution) / 2)
            left = round((image.width - self.resolution) / 2)
        else:
            top = rng.randint(0, image.height - self.resolution)
            left = rng.randint(0, image.width - self.resolution)
        image = image.crop((left, top, left + self.resolution, top + self.resolution))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
        return pixels.contiguous(), original, (top, left)


def time_ids(original: tuple[int, int], crop_top_left: tuple[int, int], resolution: int) -> torch.Tensor:
    """SDXL's micro-conditioning: original size, crop corner, target size."""
    return torch.tensor([*original, *crop_top_left, resolution, resolution], dtype=torch.float32)


class ImageDataset(Dataset):
    """Examples as pixels + time ids, for encoding once (cache) or every step."""

    def __init__(self, examples: Sequence[Example], transform: Transform) -> None:
        self.examples = list(examples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = self.examples[index]
        try:
            image = example.load()
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            raise DataError(f"{example.label}: could not read the image ({exc})") from exc
        pixels, original, crop = self.transform(image, index)
        return {
            "pixel_values": pixels,
            "time_ids": time_ids(original, crop, self.transform.resolution),
            "caption": example.caption,
        }


class EpochSampler(Sampler[int]):
    """A shuffle fixed by (seed, epoch), so a resumed run sees the same order as an uninterrupted one.

    `skip` drops the first samples of the next pass only: resuming mid-epoch without reading images
    that were already trained on.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        skip, self.skip = self.skip, 0
        return iter(order[skip:])

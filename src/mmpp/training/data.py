"""Training data: find images and captions and check them before any model loads (`pixels` turns them
into tensors, `sampler` orders them).

Two sources: a local folder in the Hugging Face imagefolder layout (images + `metadata.jsonl` with
`file_name` and a caption field) or a hub dataset with an image and a text column. Every problem
is a `DataError` that names the file, line or column to fix.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from mmpp.errors import UserFacingError

METADATA_FILE = "metadata.jsonl"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_SHOW = 5  # how many offending files a message lists before "and N more"

Size = tuple[int, int]  # (height, width)


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


def load_folder(folder: Path, caption_column: str = "text", instance_prompt: str | None = None) -> list[Example]:
    """Captions from `metadata.jsonl`; without one, `instance_prompt` captions every image (the
    reference scripts' --instance_data_dir + --instance_prompt)."""
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    images = image_files(folder)
    has_metadata = (folder / METADATA_FILE).is_file()
    if not images:
        raise DataError(f"{folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if not has_metadata and instance_prompt:
        _check_decodes(images)
        return [Example(instance_prompt, str(path), _FileImage(path)) for path in images]
    if not has_metadata:
        hint = " (metadata.csv is not read; convert it to JSON lines)" if (folder / "metadata.csv").exists() else ""
        raise DataError(
            f"{folder} has {len(images)} images but no {METADATA_FILE} with their captions{hint}. "
            f'Each line should look like {{"file_name": "0001.png", "{caption_column}": "a caption"}}, '
            "or give every image one caption with --instance-prompt."
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
    name: str, *, split: str = "train", image_column: str = "image", caption_column: str = "text",
    instance_prompt: str | None = None,
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
    return examples_from_dataset(dataset, name=name, image_column=image_column, caption_column=caption_column,
                                 instance_prompt=instance_prompt)


def examples_from_dataset(
    dataset: Any, *, name: str, image_column: str = "image", caption_column: str = "text",
    instance_prompt: str | None = None,
) -> list[Example]:
    """Rows as examples; without a caption column, `instance_prompt` captions every row (as in the reference)."""
    columns = list(dataset.column_names)
    wanted = [(image_column, "--image-column")]
    if caption_column in columns or not instance_prompt:
        wanted.append((caption_column, "--caption-column (or give every image one caption with --instance-prompt)"))
    for column, option in wanted:
        if column not in columns:
            raise DataError(
                f"Dataset '{name}' has no column '{column}' (columns: {', '.join(columns)}); choose one with {option}"
            )
    if len(dataset) == 0:
        raise DataError(f"Dataset '{name}' is empty")
    if caption_column not in columns and instance_prompt:
        return [Example(instance_prompt, f"{name} row {i}", _DatasetImage(dataset, i, image_column))
                for i in range(len(dataset))]
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
    instance_prompt: str | None = None,
) -> list[Example]:
    """A local folder if DATA names one, else a hub dataset name (owner/name)."""
    path = Path(data).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DataError(f"{data} is a file; DATA must be a folder of images or a dataset name")
        examples = load_folder(path, caption_column, instance_prompt)
    elif data.startswith((".", "/", "~")) or data.count("/") > 1 or "\\" in data:
        raise DataError(f"{data} does not exist")
    else:
        examples = load_hub_dataset(data, split=split, image_column=image_column, caption_column=caption_column,
                                    instance_prompt=instance_prompt)
    return examples[:limit] if limit else examples


def load_prior_folder(folder: Path, class_prompt: str, limit: int | None = None) -> list[Example]:
    """Class images (faces, e.g. SFHQ) for prior preservation; they all share the class prompt."""
    if not folder.is_dir():
        raise DataError(f"--prior-data: {folder} is not a folder")
    images = image_files(folder)[:limit]
    if not images:
        raise DataError(f"--prior-data: {folder} has no images")
    _check_decodes(images)
    return [Example(class_prompt, str(p), _FileImage(p)) for p in images]

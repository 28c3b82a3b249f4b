"""`mmpp prepare-data`: raw images in, a training folder (square PNGs + metadata.jsonl) out.

Face data is cropped around the one face in each image with the same detector and crop the bot
uses on selfies; style data is center-cropped. Whatever cannot be used is dropped and reported
with its reason, so nothing disappears silently.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

from mmpp.inference.preprocess import (
    FaceTooSmall,
    ImageLimits,
    ImageRejected,
    ImageTooLarge,
    NoFaceFound,
    TooManyFaces,
    decode_image,
    find_face,
)
from mmpp.training.config import DEFAULT_CLASS_PROMPT
from mmpp.training.data import METADATA_FILE, DataError

Kind = Literal["style", "face"]
# Raw data-set images may be far larger than a selfie upload; only absurd ones are refused.
_MAX_BYTES = 256 * 1024 * 1024
_MAX_PIXELS = 150_000_000
_SKIPPED_NAMES = {METADATA_FILE, "metadata.csv"}


@dataclass(frozen=True)
class Dropped:
    file: str
    reason: str


@dataclass
class PrepareReport:
    output: Path
    total: int = 0
    kept: int = 0
    dropped: list[Dropped] = field(default_factory=list)

    def summary(self) -> str:
        reasons = Counter(d.reason.split(":")[0] for d in self.dropped)
        detail = "; ".join(f"{n} {r}" for r, n in reasons.most_common())
        dropped = f" (dropped {len(self.dropped)}: {detail})" if detail else ""
        return f"kept {self.kept} of {self.total} images{dropped}"


def _source_captions(source: Path, caption_column: str) -> dict[str, str]:
    path = source / METADATA_FILE
    if not path.is_file():
        return {}
    captions: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not JSON ({exc.msg})") from None
        if isinstance(row, dict) and isinstance(row.get("file_name"), str):
            text = row.get(caption_column)
            if isinstance(text, str) and text.strip():
                captions[row["file_name"]] = text.strip()
    return captions


def _caption_for(path: Path, source: Path, captions: dict[str, str], fallback: str | None) -> str | None:
    name = path.relative_to(source).as_posix()
    if name in captions:
        return captions[name]
    sidecar = path.with_suffix(".txt")
    if sidecar.is_file() and (text := sidecar.read_text(encoding="utf-8").strip()):
        return text
    return fallback


def _candidates(source: Path) -> list[Path]:
    """Every file that might be an image: a misnamed JPEG still counts, captions and hidden files do not."""
    return sorted(
        p for p in source.rglob("*")
        if p.is_file()
        and p.name not in _SKIPPED_NAMES
        and p.suffix.lower() != ".txt"
        and not any(part.startswith(".") for part in p.relative_to(source).parts)
    )


def center_square(image: Image.Image, size: int) -> Image.Image:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)


_FACE_REASONS: dict[type[ImageRejected], str] = {
    NoFaceFound: "no face found",
    TooManyFaces: "more than one face",
    FaceTooSmall: "face too small",
}


def prepare_data(
    source: Path,
    output: Path,
    *,
    kind: Kind,
    resolution: int,
    min_size: int | None = None,
    caption: str | None = None,
    caption_column: str = "text",
) -> PrepareReport:
    if not source.is_dir():
        raise DataError(f"{source} is not a folder")
    if output.exists() and any(output.iterdir()):
        raise DataError(f"{output} is not empty; choose a new folder for the prepared data")
    min_side = min_size if min_size is not None else resolution // 2
    limits = ImageLimits(
        max_bytes=_MAX_BYTES, max_pixels=_MAX_PIXELS, min_side=1, min_face_px=max(48, resolution // 4)
    )
    fallback = caption if caption is not None else (DEFAULT_CLASS_PROMPT if kind == "face" else None)
    captions = _source_captions(source, caption_column)
    files = _candidates(source)
    report = PrepareReport(output=output, total=len(files))
    if not files:
        raise DataError(f"{source} has no files to prepare")

    rows: list[dict[str, str]] = []
    used: set[str] = set()
    for path in files:
        name = path.relative_to(source).as_posix()
        try:
            image = decode_image(path.read_bytes(), limits)
        except ImageTooLarge:
            report.dropped.append(Dropped(name, "too large"))
            continue
        except ImageRejected:
            report.dropped.append(Dropped(name, "not a readable image"))
            continue
        if min(image.size) < min_side:
            report.dropped.append(
                Dropped(name, f"too small: {image.width}x{image.height}, needs {min_side} px on the short side")
            )
            continue
        text = _caption_for(path, source, captions, fallback)
        if text is None:
            report.dropped.append(Dropped(name, "no caption: add metadata.jsonl or a .txt next to it, or --caption"))
            continue
        if kind == "face":
            try:
                located = find_face(image, limits)
            except (NoFaceFound, TooManyFaces, FaceTooSmall) as exc:
                report.dropped.append(Dropped(name, _FACE_REASONS[type(exc)]))
                continue
            prepared = located.square(resolution)
        else:
            prepared = center_square(image, resolution)
        out_name = _unique(path.stem, used)
        output.mkdir(parents=True, exist_ok=True)
        prepared.save(output / out_name, format="PNG")
        rows.append({"file_name": out_name, "text": text})
        report.kept += 1

    if not rows:
        raise DataError(f"No usable image in {source}: {report.summary()}")
    with (output / METADATA_FILE).open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return report


def _unique(stem: str, used: set[str]) -> str:
    name, n = f"{stem}.png", 1
    while name in used:
        name, n = f"{stem}-{n}.png", n + 1
    used.add(name)
    return name

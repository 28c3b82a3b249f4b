"""Reading a style folder: `style.json` (the definition, see `style_definition.py`), optionally a
LoRA file and a `sample.png` that `/style list` shows. The LoRA source may also be a hub id.

A style folder may come from a stranger, so every path it names must stay inside it, every weight
file must be safetensors (a pickle can run code when loaded), and its sample leaves the bot only as
freshly decoded pixels. Errors name the file and the field.
"""

from __future__ import annotations

import io
import json
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from mmpp.errors import UserFacingError
from mmpp.inference.style_definition import LoraSource, StyleDefinition, in_english
from mmpp.logs import log_event

log = logging.getLogger(__name__)

DEFINITION_FILE = "style.json"
# A hub repo id as the hub spells them: owner/name, no path tricks.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
WEIGHT_SUFFIX = ".safetensors"
# A sample is re-encoded before it is sent; these keep a hostile file from costing memory or time.
SAMPLE_MAX_BYTES = 8 * 1024 * 1024
SAMPLE_MAX_PIXELS = 16_000_000
SAMPLE_SIDE = 512
# The only readers PIL may try on a sample: every other decoder (TIFF, ICO, PSD, ...) is attack surface
# a style folder from a stranger could reach, and no style needs it.
SAMPLE_FORMATS = ("PNG", "JPEG")


class StyleError(UserFacingError):
    code = "bad_style"


@dataclass(frozen=True)
class Style:
    """A definition plus where it was found, so relative paths resolve."""

    definition: StyleDefinition
    folder: Path
    builtin: bool = False

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def description(self) -> str:
        """The English description: the one the database stores (members read theirs through the bot)."""
        return in_english(self.definition.description)

    @property
    def lora_path(self) -> str | None:
        """A local path when the source names a file or folder next to the definition, else the hub id;
        None for a prompt style."""
        lora = self.definition.lora
        if lora is None:
            return None
        local = self.folder / lora.source
        return str(local) if local.exists() else lora.source

    @property
    def sample_path(self) -> Path | None:
        if not self.definition.sample_image:
            return None
        path = self.folder / self.definition.sample_image
        return path if path.is_file() else None

    def sample_png(self) -> bytes | None:
        """The sample as a fresh PNG (at most SAMPLE_SIDE pixels a side, no metadata), or None when there
        is none or it is not a picture: whatever the file holds, only decoded pixels leave the bot."""
        path = self.sample_path
        if path is None or path.stat().st_size > SAMPLE_MAX_BYTES:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path, formats=SAMPLE_FORMATS) as image:
                    if image.width * image.height > SAMPLE_MAX_PIXELS:
                        return None
                    image.thumbnail((SAMPLE_SIDE, SAMPLE_SIDE))
                    rgb = image.convert("RGB")
        except UnidentifiedImageError:
            # Another format (or no picture at all): the style goes on without its sample.
            log_event(log, logging.WARNING, "style sample left out", file=str(path),
                      reason="not a PNG or JPEG picture")
            return None
        except (OSError, Image.DecompressionBombError, Image.DecompressionBombWarning, ValueError,
                SyntaxError, EOFError):
            return None
        buffer = io.BytesIO()
        rgb.save(buffer, format="PNG")
        return buffer.getvalue()


def load_style(folder: Path, *, builtin: bool = False) -> Style:
    """Read and check one style folder; errors name the file and the field."""
    path = folder / DEFINITION_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise StyleError(f"{path}: file is missing") from exc
    except json.JSONDecodeError as exc:
        raise StyleError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    try:
        definition = StyleDefinition.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise StyleError(f"{path}: field '{where}': {first['msg']}") from exc
    if definition.name != folder.name:
        raise StyleError(f"{path}: field 'name': '{definition.name}' must match its folder '{folder.name}'")
    _check_paths(path, folder, definition)
    return Style(definition, folder, builtin=builtin)


def _inside(folder: Path, relative: str) -> bool:
    """Whether `folder/relative` stays in `folder` once `..` and symlinks are resolved."""
    if Path(relative).is_absolute():
        return False
    return (folder / relative).resolve().is_relative_to(folder.resolve())


def _check_paths(path: Path, folder: Path, definition: StyleDefinition) -> None:
    """Every path a style names stays inside its folder, and weights are safetensors only."""
    sample = definition.sample_image
    if sample is not None and not _inside(folder, sample):
        raise StyleError(f"{path}: field 'sample_image': '{sample}' must be a file inside the style folder")
    if definition.lora is not None:
        _check_lora(path, folder, definition.lora, "lora")
    if definition.fast is not None:
        _check_lora(path, folder, definition.fast.lora, "fast.lora")


def _check_lora(path: Path, folder: Path, lora: LoraSource, field: str) -> None:
    local = folder / lora.source
    if local.exists() or lora.source.startswith((".", "/", "~")) or not _HUB_ID.match(lora.source):
        if not _inside(folder, lora.source):
            raise StyleError(
                f"{path}: field '{field}.source': '{lora.source}' must be a file inside the style folder "
                "or a hub id (owner/name)"
            )
        if not local.exists():
            raise StyleError(f"{path}: field '{field}.source': {local} does not exist")
    weight = lora.weight_name or (lora.source if local.is_file() else None)
    if weight is not None and not weight.endswith(WEIGHT_SUFFIX):
        raise StyleError(
            f"{path}: field '{field}.{'weight_name' if lora.weight_name else 'source'}': "
            f"'{weight}' is not a .safetensors file; other weight formats can run code when loaded, so convert it"
        )
    if lora.weight_name is not None and local.is_dir() and not _inside(local, lora.weight_name):
        raise StyleError(f"{path}: field '{field}.weight_name': '{lora.weight_name}' must be a file inside the folder")
    if lora.weight_name is None and local.is_dir():
        # Checked here too, not only as the LoRA loads: a bot whose workers draw loads no weights,
        # and would otherwise offer a style that no worker can draw.
        check_holds_weights(path, f"{field}.source", local)


def check_holds_weights(where: Path, named: str, folder: Path) -> None:
    """A LoRA folder named without a file must hold a `.safetensors` one; diffusers would otherwise
    pick what is there, and a pickled `.bin` runs code when it is loaded."""
    if not any(folder.glob("*" + WEIGHT_SUFFIX)):
        raise StyleError(
            f"{where}: field '{named}': the folder {folder.name} holds no .safetensors file; other weight "
            "formats can run code when loaded, so convert it"
        )


def write_style(folder: Path, definition: StyleDefinition) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DEFINITION_FILE
    path.write_text(definition.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
    return path

"""Style definitions and the catalog: the built-in prompt styles plus every style in the styles folder.

A style lives in its own folder: `style.json` (the definition below), optionally a LoRA file and a
`sample.png` that `/style list` shows. The LoRA source may also be a hub id. A style folder may come
from a stranger, so every path it names must stay inside it and every weight file must be safetensors
(a pickle can run code when loaded).
"""

from __future__ import annotations

import io
import json
import logging
import re
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Formatter
from typing import Literal

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mmpp.errors import CodedError, UserFacingError
from mmpp.inference.backgrounds import background_prompt
from mmpp.logs import log_event

log = logging.getLogger(__name__)

DEFINITION_FILE = "style.json"
SchedulerName = Literal["euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
# A hub repo id as the hub spells them: owner/name, no path tricks.
# A Discord locale code as a style's title and description tables key them: "ko", "en-US", "pt-BR".
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")
# English is the table's fallback, the one a CLI and the database read.
FALLBACK_LOCALE = "en"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
WEIGHT_SUFFIX = ".safetensors"
# A sample is re-encoded before it is sent; these keep a hostile file from costing memory or time.
SAMPLE_MAX_BYTES = 8 * 1024 * 1024
SAMPLE_MAX_PIXELS = 16_000_000
SAMPLE_SIDE = 512
# The only readers PIL may try on a sample: every other decoder (TIFF, ICO, PSD, ...) is attack surface
# a style folder from a stranger could reach, and no style needs it.
SAMPLE_FORMATS = ("PNG", "JPEG")
# Built-in styles that were renamed, old name -> new. Stored presets, channel overrides and Reroll
# buttons posted before the rename still say the old name; `StyleCatalog.canonical` is the one place
# that reads this table. A style folder of the old name in STYLES_DIR still wins: it is the operator's.
RENAMED_BUILTINS: dict[str, str] = {"simpsons": "sunny-cartoon"}


class LoraSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="A file or folder relative to the style folder, or a hub id.")
    weight_name: str | None = Field(default=None, description="File name inside a folder or hub repo.")
    scale: float = Field(default=1.0, ge=0.0, le=2.0)


class FastPreset(BaseModel):
    """A few-step LoRA (LCM, Lightning, Hyper-SD, TCD) stacked on the style's own LoRA, with the
    scheduler, step count and guidance it was distilled for."""

    model_config = ConfigDict(extra="forbid")

    lora: LoraSource
    scheduler: Literal["lcm", "tcd", "euler_trailing"] = "lcm"
    steps: int = Field(default=4, ge=1, le=16)
    guidance: float = Field(default=1.0, ge=0.0, le=30.0, description="1 or less turns CFG off (half the work).")


# A style's title or description: one text for everyone, or a table by Discord locale with an "en" entry.
Localized = str | dict[str, str]


def in_english(value: Localized) -> str:
    """The one text, or the table's English entry: what the database stores and the CLI prints."""
    return value if isinstance(value, str) else value[FALLBACK_LOCALE]


# What a prompt template may name, each plain: `{trigger}`, never `{trigger.x}` or `{trigger:>9}`.
PLACEHOLDERS = frozenset({"trigger", "framing", "background"})


class StyleDefinition(BaseModel):
    """Everything that makes one look; a server preset adds its own touches on top."""

    model_config = ConfigDict(extra="forbid")

    name: str
    # Either one text or {"en": ..., "ko": ...}; the bot picks the member's (bot/words/style_words.py).
    display_name: Localized = ""
    description: Localized = ""
    trigger_words: list[str] = Field(default_factory=list)
    prompt: str = Field(
        default="portrait of a person, {trigger}, {framing}, {background}",
        description="Template; {trigger}, {framing} and {background} are filled in per job.",
    )
    negative_prompt: str = "photo, photorealistic, blurry, deformed, text, watermark"
    # None: a prompt style, drawn by SDXL from the words alone with no LoRA active.
    lora: LoraSource | None = None
    controlnet_scale: float = Field(default=0.5, ge=0.0, le=2.0)
    ip_adapter_scale: float = Field(default=0.6, ge=0.0, le=2.0)
    steps: int = Field(default=30, ge=1, le=150)
    guidance: float = Field(default=6.0, ge=0.0, le=30.0)
    scheduler: SchedulerName = "euler"
    sample_image: str | None = None
    # Colours the finished portrait is reduced to (pixel art's small palette); None keeps every colour.
    palette: int | None = Field(default=None, ge=2, le=256)
    fast: FastPreset | None = Field(default=None, description="The fast preset (FAST_PRESET=on); see speed.py.")

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be 1-32 lowercase letters, digits or dashes, starting with a letter/digit")
        return value

    @field_validator("display_name", "description")
    @classmethod
    def _by_locale(cls, value: Localized) -> Localized:
        """A table names each language by its Discord locale code and has English, the fallback."""
        if isinstance(value, str):
            return value
        if FALLBACK_LOCALE not in value:
            raise ValueError(f"a table by language needs an '{FALLBACK_LOCALE}' entry, shown where no other fits")
        for code, text in value.items():
            if not _LOCALE.match(code):
                raise ValueError(f"'{code}' is not a Discord locale code such as 'ko', 'ja' or 'pt-BR'")
            if not text.strip():
                raise ValueError(f"the '{code}' entry is empty")
        return value

    @field_validator("prompt")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        """Only {trigger}, {framing} and {background}, plain: the template comes from a style folder
        anyone may have written, and `str.format` would obey a format spec (`{trigger:>300000000}`
        builds a 300 MB string) or reach into objects (`{background.__class__}`)."""
        try:
            fields = [(name, spec, conversion) for _, name, spec, conversion in Formatter().parse(value)
                      if name is not None]
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
        unknown = sorted({name for name, _, _ in fields} - PLACEHOLDERS)
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {unknown}; use {{trigger}}, {{framing}} and {{background}}"
            )
        if any(spec or conversion for _, spec, conversion in fields):
            raise ValueError("placeholders take no format spec or conversion: write {trigger}, not {trigger:...}")
        return value

    def render_prompt(self, background: str | None = None, framing: str | None = None) -> str:
        """The prompt for one job; a server preset's touches replace the neutral defaults."""
        trigger = ", ".join(self.trigger_words)
        text = self.prompt.format(
            trigger=trigger, background=background_prompt(background), framing=framing or "head and shoulders"
        )
        # A template without placeholders still needs the trigger word to wake the LoRA up.
        if trigger and trigger not in text:
            text = f"{trigger}, {text}"
        return re.sub(r"(,\s*)+", ", ", text).strip(" ,")

    @property
    def title(self) -> str:
        """The English title (the CLI's and the log's); members read theirs through the bot's words."""
        return in_english(self.display_name) or self.name.replace("-", " ").title()

    def finish(self, image: Image.Image) -> Image.Image:
        """The decoded portrait as the style wants it delivered (see `palette`)."""
        if self.palette is None:
            return image
        # Median cut picks the colours this portrait uses most; no dithering, since pixel art has flat areas.
        return image.quantize(self.palette, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).convert("RGB")


class StyleError(UserFacingError):
    code = "bad_style"


class UnknownStyleError(CodedError):
    """`known`: the names this catalog has, sorted."""

    code = "unknown_style"


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


def builtin_styles_dir() -> Path:
    """The prompt styles that ship inside the package (`inference/builtin_styles/NAME/style.json`)."""
    return Path(str(resources.files("mmpp.inference").joinpath("builtin_styles")))


def write_style(folder: Path, definition: StyleDefinition) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DEFINITION_FILE
    path.write_text(definition.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
    return path


@dataclass
class StyleCatalog:
    """Every style found in a folder. Broken ones are kept out and reported, not fatal to the rest."""

    styles: dict[str, Style] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, styles_dir: Path, *, builtin: bool = False) -> StyleCatalog:
        """The styles in `styles_dir`; with `builtin`, the shipped prompt styles first, each replaced by
        a folder of the same name in `styles_dir` (a trained LoRA beats the prompt-only version)."""
        catalog = cls()
        if builtin:
            catalog._load_folder(builtin_styles_dir(), builtin=True)
            if not styles_dir.is_dir():
                # A fresh install has no styles folder yet; the built-ins are enough to start.
                return catalog
        elif not styles_dir.is_dir():
            catalog.errors.append(f"{styles_dir}: styles folder does not exist")
            return catalog
        catalog._load_folder(styles_dir, builtin=False)
        return catalog

    def _load_folder(self, styles_dir: Path, *, builtin: bool) -> None:
        for folder in sorted(p for p in styles_dir.iterdir() if p.is_dir()):
            if not (folder / DEFINITION_FILE).exists():
                continue
            try:
                style = load_style(folder, builtin=builtin)
            except StyleError as exc:
                self.errors.append(exc.message)
                log_event(log, logging.ERROR, "style rejected", reason=exc.message)
                continue
            self.styles[style.name] = style

    def reject(self, name: str, reason: str) -> None:
        """Take a style out after loading, e.g. when its LoRA file turns out to be broken."""
        self.styles.pop(name, None)
        self.errors.append(reason)

    def canonical(self, name: str) -> str:
        """The name this catalog knows `name` by: itself when the catalog has such a style (an
        operator's own folder of a retired built-in name included), else the built-in's new name."""
        if name in self.styles:
            return name
        renamed = RENAMED_BUILTINS.get(name)
        return renamed if renamed is not None and renamed in self.styles else name

    def renamed(self) -> dict[str, str]:
        """Old name -> new name for every renamed built-in this catalog answers to by its new name only."""
        return {old: new for old in RENAMED_BUILTINS if (new := self.canonical(old)) != old}

    def get(self, name: str) -> Style:
        try:
            return self.styles[self.canonical(name)]
        except KeyError:
            raise UnknownStyleError(style=name, known=sorted(self.styles)) from None

    def names(self) -> list[str]:
        return sorted(self.styles)

    def __len__(self) -> int:
        return len(self.styles)

    def __contains__(self, name: object) -> bool:
        return name in self.styles

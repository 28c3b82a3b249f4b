"""Style definitions and the catalog that loads every style in the styles folder.

A style lives in its own folder: `style.json` (the definition below) and a LoRA file, optionally a
`sample.png` that `/style list` shows. The LoRA source may also be a hub id.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mmpp.errors import UserFacingError
from mmpp.logs import log_event

log = logging.getLogger(__name__)

DEFINITION_FILE = "style.json"
SchedulerName = Literal["euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


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


class StyleDefinition(BaseModel):
    """Everything that makes one look; a server preset adds its own touches on top."""

    model_config = ConfigDict(extra="forbid")

    name: str
    display_name: str = ""
    description: str = ""
    trigger_words: list[str] = Field(default_factory=list)
    prompt: str = Field(
        default="portrait of a person, {trigger}, {framing}, {background}",
        description="Template; {trigger}, {framing} and {background} are filled in per job.",
    )
    negative_prompt: str = "photo, photorealistic, blurry, deformed, text, watermark"
    lora: LoraSource
    controlnet_scale: float = Field(default=0.5, ge=0.0, le=2.0)
    ip_adapter_scale: float = Field(default=0.6, ge=0.0, le=2.0)
    steps: int = Field(default=30, ge=1, le=150)
    guidance: float = Field(default=6.0, ge=0.0, le=30.0)
    scheduler: SchedulerName = "euler"
    sample_image: str | None = None
    fast: FastPreset | None = Field(default=None, description="The fast preset (FAST_PRESET=on); see speed.py.")

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be 1-32 lowercase letters, digits or dashes, starting with a letter/digit")
        return value

    @field_validator("prompt")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        unknown = set(re.findall(r"{(\w*)}", value)) - {"trigger", "background", "framing"}
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {sorted(unknown)}; use {{trigger}}, {{framing}} and {{background}}"
            )
        return value

    def render_prompt(self, background: str | None = None, framing: str | None = None) -> str:
        """The prompt for one job; a server preset's touches replace the neutral defaults."""
        trigger = ", ".join(self.trigger_words)
        bg = f"plain {background} background" if background else "simple background"
        text = self.prompt.format(trigger=trigger, background=bg, framing=framing or "head and shoulders")
        # A template without placeholders still needs the trigger word to wake the LoRA up.
        if trigger and trigger not in text:
            text = f"{trigger}, {text}"
        return re.sub(r"(,\s*)+", ", ", text).strip(" ,")

    @property
    def title(self) -> str:
        return self.display_name or self.name.replace("-", " ").title()


class StyleError(UserFacingError):
    code = "bad_style"


class UnknownStyleError(UserFacingError):
    code = "unknown_style"


@dataclass(frozen=True)
class Style:
    """A definition plus where it was found, so relative paths resolve."""

    definition: StyleDefinition
    folder: Path

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def description(self) -> str:
        return self.definition.description

    @property
    def lora_path(self) -> str:
        """A local path when the source names a file or folder next to the definition, else the hub id."""
        local = self.folder / self.definition.lora.source
        return str(local) if local.exists() else self.definition.lora.source

    @property
    def sample_path(self) -> Path | None:
        if not self.definition.sample_image:
            return None
        path = self.folder / self.definition.sample_image
        return path if path.is_file() else None


def load_style(folder: Path) -> Style:
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
    style = Style(definition, folder)
    lora = folder / definition.lora.source
    looks_local = "/" not in definition.lora.source or definition.lora.source.startswith((".", "/"))
    if looks_local and not lora.exists():
        raise StyleError(f"{path}: field 'lora.source': {lora} does not exist")
    if definition.fast is not None and not (folder / definition.fast.lora.source).exists():
        if "/" not in definition.fast.lora.source or definition.fast.lora.source.startswith((".", "/")):
            raise StyleError(f"{path}: field 'fast.lora.source': {folder / definition.fast.lora.source} does not exist")
    return style


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
    def load(cls, styles_dir: Path) -> StyleCatalog:
        catalog = cls()
        if not styles_dir.is_dir():
            catalog.errors.append(f"{styles_dir}: styles folder does not exist")
            return catalog
        for folder in sorted(p for p in styles_dir.iterdir() if p.is_dir()):
            if not (folder / DEFINITION_FILE).exists():
                continue
            try:
                style = load_style(folder)
            except StyleError as exc:
                catalog.errors.append(exc.message)
                log_event(log, logging.ERROR, "style rejected", reason=exc.message)
                continue
            catalog.styles[style.name] = style
        return catalog

    def reject(self, name: str, reason: str) -> None:
        """Take a style out after loading, e.g. when its LoRA file turns out to be broken."""
        self.styles.pop(name, None)
        self.errors.append(reason)

    def get(self, name: str) -> Style:
        try:
            return self.styles[name]
        except KeyError:
            known = ", ".join(sorted(self.styles)) or "none"
            raise UnknownStyleError(f"There is no style called '{name}'. Styles available: {known}.") from None

    def names(self) -> list[str]:
        return sorted(self.styles)

    def __len__(self) -> int:
        return len(self.styles)

    def __contains__(self, name: object) -> bool:
        return name in self.styles

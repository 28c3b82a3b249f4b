"""What a style is: its definition (`style.json`, checked field by field as it is read), the LoRA it
stacks and its fast preset, titles and descriptions by language, and the prompt it renders per job.

A definition may come from a stranger's style folder, so its prompt template is checked to name only
the placeholders it may (`str.format` would otherwise obey a format spec or reach into objects).
Where a definition is found and what its paths may name is `style_folder.py`'s.
"""

from __future__ import annotations

import re
from string import Formatter
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmpp.inference.backgrounds import background_prompt

SchedulerName = Literal["euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
# A Discord locale code as a style's title and description tables key them: "ko", "en-US", "pt-BR".
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")
# English is the table's fallback, the one a CLI and the database read.
FALLBACK_LOCALE = "en"


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

"""One settings object for the whole bot, read from the environment and `bot.env`.

Every field is documented in `bot.env.example`; the environment variable is the field name in capitals.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Device = Literal["auto", "cpu", "cuda", "mps"]
DType = Literal["auto", "float32", "float16", "bfloat16"]


@dataclass(frozen=True)
class ModelSources:
    """Where each model comes from: a hub id or a local folder, plus the file names inside it.

    Kept apart from `Settings` so a `--model-dir` can swap every source at once.
    """

    base_model: str
    vae: str | None
    controlnet: str
    ip_adapter: str
    ip_adapter_subfolder: str
    ip_adapter_weight_name: str
    image_encoder: str
    image_encoder_subfolder: str
    styles_dir: Path

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> ModelSources:
        """The layout that `mmpp make-tiny-model` writes (and any folder laid out the same way)."""
        model_dir = Path(model_dir)
        return cls(
            base_model=str(model_dir / "sdxl"),
            vae=None,
            controlnet=str(model_dir / "controlnet"),
            ip_adapter=str(model_dir / "ip-adapter"),
            ip_adapter_subfolder="",
            ip_adapter_weight_name="ip-adapter.safetensors",
            image_encoder=str(model_dir / "ip-adapter"),
            image_encoder_subfolder="image_encoder",
            styles_dir=model_dir / "styles",
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file="bot.env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        # `KEY=` in bot.env means "use the default", as a newcomer filling in the example expects.
        env_ignore_empty=True,
    )

    # --- models -------------------------------------------------------------------------------
    model_dir: Path | None = Field(
        default=None, description="A folder laid out like `mmpp make-tiny-model`; overrides every source."
    )
    base_model: str = "stabilityai/stable-diffusion-xl-base-1.0"
    vae: str | None = "madebyollin/sdxl-vae-fp16-fix"
    controlnet: str = "diffusers/controlnet-canny-sdxl-1.0"
    ip_adapter: str = "h94/IP-Adapter"
    ip_adapter_subfolder: str = "sdxl_models"
    ip_adapter_weight_name: str = "ip-adapter-plus-face_sdxl_vit-h.safetensors"
    image_encoder: str = "h94/IP-Adapter"
    image_encoder_subfolder: str = "models/image_encoder"
    styles_dir: Path = Path("styles")
    device: Device = "auto"
    dtype: DType = "auto"

    # --- speed (inference/speed.py documents each switch) ---------------------------------------
    attention: Literal["sdpa", "eager"] = "sdpa"
    channels_last: bool = False
    fuse_qkv: bool = False
    compile: Literal["off", "default", "max-autotune"] = "off"
    warmup: bool = False
    fast_preset: bool = False

    # --- input limits -------------------------------------------------------------------------
    max_upload_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    min_image_side: int = 64
    min_face_px: int = 48

    # --- generation defaults ------------------------------------------------------------------
    preview_every: int = Field(default=5, ge=1, description="Send a preview image every N steps.")
    max_batch_size: int = Field(default=4, ge=1)

    # --- queue --------------------------------------------------------------------------------
    queue_capacity: int = Field(default=100, ge=1)
    queue_job_deadline_s: float = Field(default=14 * 60, gt=0)
    # Only when the GPU was idle: under load, jobs gather behind the running batch anyway, so a wait
    # would only add latency to a lone job.
    queue_batch_wait_s: float = Field(default=0.0, ge=0)

    # --- database -----------------------------------------------------------------------------
    database_url: str = "sqlite+aiosqlite:///mmpp.sqlite3"
    log_retention_days: int = Field(default=90, ge=1)
    user_daily_quota: int = Field(default=20, ge=0)
    server_daily_quota: int = Field(default=500, ge=0)
    default_style: str = "simpsons"

    # --- discord ------------------------------------------------------------------------------
    discord_token: SecretStr | None = None
    discord_api_base: str | None = Field(
        default=None, description="REST base URL, e.g. a rate-limit proxy; default is Discord's own."
    )
    discord_gateway_url: str | None = None
    discord_cdn_base: str | None = Field(default=None, description="Media proxy for avatars; default Discord's CDN.")
    discord_test_guild_id: int | None = None
    progress_edit_interval_s: float = Field(
        default=1.2, ge=0, description="Least time between two progress edits of one reply (rate limits)."
    )
    reroll_ttl_s: float = Field(
        default=15 * 60, ge=0, description="How long a face crop stays in memory for the Reroll button."
    )
    metrics_port: int | None = Field(default=None, description="Serve Prometheus metrics on this port.")

    # --- logging ------------------------------------------------------------------------------
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("vae", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", "none", "None") else value

    @field_validator("ip_adapter_subfolder", "image_encoder_subfolder", mode="before")
    @classmethod
    def _none_is_top_level(cls, value: object) -> object:
        # `KEY=` means "the default" in bot.env, so the top of the folder is spelled `none`.
        return "" if value in ("none", "None", ".") else value

    @cached_property
    def sources(self) -> ModelSources:
        if self.model_dir is not None:
            return ModelSources.from_model_dir(self.model_dir)
        return ModelSources(**{f.name: getattr(self, f.name) for f in fields(ModelSources)})


def load_settings(env_file: Path | str | None = "bot.env", **overrides: object) -> Settings:
    """Settings from `env_file` (if present) and the environment; `overrides` win (CLI flags)."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(_env_file=env_file, **clean)  # type: ignore[call-arg]

"""One settings object for the whole bot, read from the environment and `bot.env`.

Every field is documented in `bot.env.example`; the environment variable is the field name in capitals.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mmpp.errors import UserFacingError
from mmpp.logs import hide_url_password

# What DEVICE may say; `mmpp.inference.device` checks that this machine has it.
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
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
    # None: no image safety check (SAFETY_CHECKER=none).
    safety_checker: str | None

    @classmethod
    def from_model_dir(cls, model_dir: Path, *, vae: bool = True) -> ModelSources:
        """The layout that `mmpp make-tiny-model` writes (and any folder laid out the same way).

        It mirrors the production sources: `vae/` stands for the fp16-fix VAE repo, `ip-adapter/` for
        h94/IP-Adapter (weights in `sdxl_models/`, the encoder in `models/image_encoder/`). The Plus-face
        weights are used when present, else the plain ones; `vae=False` is `VAE=none`.
        """
        model_dir = Path(model_dir)
        ip_adapter = model_dir / "ip-adapter"
        weights = sorted(p.name for p in (ip_adapter / "sdxl_models").glob("ip-adapter*_sdxl_vit-*.safetensors"))
        plus = [name for name in weights if name.startswith("ip-adapter-plus-face")]
        return cls(
            base_model=str(model_dir / "sdxl"),
            vae=str(model_dir / "vae") if vae else None,
            controlnet=str(model_dir / "controlnet"),
            ip_adapter=str(ip_adapter),
            ip_adapter_subfolder="sdxl_models",
            ip_adapter_weight_name=(plus or weights or ["ip-adapter-plus-face_sdxl_vit-tiny.safetensors"])[0],
            image_encoder=str(ip_adapter),
            image_encoder_subfolder="models/image_encoder",
            styles_dir=model_dir / "styles",
            safety_checker=str(model_dir / "safety-checker"),
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
    safety_checker: str | None = Field(
        default="CompVis/stable-diffusion-safety-checker",
        description="Image safety classifier every portrait passes before it is posted; `none` turns it off.",
    )
    # The prompt styles that ship with the bot; a STYLES_DIR folder of the same name replaces one.
    builtin_styles: bool = True
    device: str = Field(
        default="auto", description="auto (the first CUDA GPU, else MPS, else the CPU), cpu, mps, cuda or cuda:N."
    )
    devices: str | None = Field(
        default=None, description="One engine per device behind one queue: `cuda:0,cuda:1`, or `auto` for every GPU."
    )
    dtype: DType = "auto"
    # --- GPU memory (inference/memory_plan.py) --------------------------------------------------
    gpu_memory_gb: float | None = Field(
        default=None, gt=0, description="The card's memory in GB; picks the memory plan. Default: what the GPU reports."
    )
    memory_plan: Literal["auto", "resident", "12gb", "8gb"] = "auto"

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
    download_timeout_s: float = Field(default=10.0, gt=0, description="Longest time one selfie download may take.")
    # Decoding a 40-megapixel JPEG takes ~0.4 GB and ~2 s; this bounds how many run at once, bot-wide.
    max_concurrent_decodes: int = Field(default=2, ge=1)
    # An upload stays in memory from its download until its face is found, up to MAX_UPLOAD_BYTES
    # each: this bounds how many are held at once, bot-wide, whatever the number of members (or of
    # one attacker's accounts) sending pictures together. The rest wait their turn, acknowledged.
    max_concurrent_downloads: int = Field(
        default=8, ge=1, description="Pictures downloaded and read at once, bot-wide (memory: this × MAX_UPLOAD_BYTES)."
    )

    # --- generation defaults ------------------------------------------------------------------
    preview_every: int = Field(default=5, ge=1, description="Send a preview image every N steps.")
    max_batch_size: int = Field(default=4, ge=1)
    candidates: int | None = Field(
        default=None, ge=1, le=4,
        description="Takes per request, shown together (1-4); default 2 when the engines run on a GPU, 1 on the CPU.",
    )

    # --- what a server's admins may choose (/style set): ceilings they cannot exceed -------------
    # Each default leaves admins today's choices; a stored server value past a ceiling set later is
    # held to it where it is used, and /style set refuses it with one line.
    server_max_candidates: int = Field(
        default=4, ge=1, le=4,
        description="The most takes a server may ask for with `/style set candidates:` (1-4); CANDIDATES stays the "
        "bot's own number where a server did not choose.",
    )
    servers_may_relax_safety: bool = Field(
        default=True, description="Whether a server may relax the safety check in its age-restricted channels."
    )
    servers_may_post_by_default: bool = Field(
        default=True, description="Whether a server may have portraits posted in the channel at once (`public`)."
    )
    servers_may_disable_guard: bool = Field(
        default=True,
        description="Whether a server may turn the unlinkable guard off for its rooms (`unlinkable:false`); a member's "
        "own choice, where a room lets members choose, stays theirs.",
    )

    # --- queue --------------------------------------------------------------------------------
    queue_capacity: int = Field(default=100, ge=1)
    queue_job_deadline_s: float = Field(default=14 * 60, gt=0)
    # Only when the GPU was idle: under load, jobs gather behind the running batch anyway, so a wait
    # would only add latency to a lone job.
    queue_batch_wait_s: float = Field(default=0.0, ge=0)

    # --- GPU workers on other machines (issue 12) ----------------------------------------------
    queue_backend: Literal["local", "redis"] = Field(
        default="local", description="local: the bot draws itself; redis: `mmpp worker` processes draw."
    )
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    worker_id: str | None = Field(default=None, description="A worker's name in Redis; default host-pid.")
    queue_secret: SecretStr | None = Field(
        default=None,
        description="Key shared by the bot and its workers; seals faces and results in Redis. Needed off loopback.",
    )
    batch_timeout_s: float = Field(
        default=15 * 60, gt=0,
        description="Longest one remote batch may run: the worker stops it, the bot tells its members.",
    )
    # --- gateway shards (issue 12) -------------------------------------------------------------
    shard_count: int | None = Field(default=None, ge=1, description="Total shards; default: Discord's advice.")
    shard_ids: str | None = Field(default=None, description="This process's shards: `0-3` or `0,1,2,3`.")

    # --- database -----------------------------------------------------------------------------
    database_url: str = "sqlite+aiosqlite:///mmpp.sqlite3"
    log_retention_days: int = Field(default=90, ge=1)
    user_daily_quota: int = Field(default=20, ge=0)
    server_daily_quota: int = Field(default=500, ge=0)
    default_style: str = "sunny-cartoon"  # a built-in prompt style, so a fresh install has it

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
    reroll_cache_mb: int = Field(
        default=256, ge=1,
        description="Most memory the face crops kept for Reroll may take; the oldest go first when it is full.",
    )
    shutdown_grace_s: float = Field(
        default=30.0, ge=0, description="On SIGTERM/Ctrl-C: how long running portraits may finish before the stop."
    )
    metrics_port: int | None = Field(default=None, description="Serve Prometheus metrics on this port.")

    # --- logging ------------------------------------------------------------------------------
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("vae", "safety_checker", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", "none", "None") else value

    @field_validator("device", mode="before")
    @classmethod
    def _device_name(cls, value: object) -> object:
        # Only the spelling here; whether this machine has the device is `mmpp.inference.device`'s to say.
        if isinstance(value, str) and _DEVICE.fullmatch(value.strip().lower()):
            return value.strip().lower()
        raise ValueError("auto, cpu, mps, cuda or cuda:N (like cuda:1)")

    @field_validator("ip_adapter_subfolder", "image_encoder_subfolder", mode="before")
    @classmethod
    def _none_is_top_level(cls, value: object) -> object:
        # `KEY=` means "the default" in bot.env, so the top of the folder is spelled `none`.
        return "" if value in ("none", "None", ".") else value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # repr() and str() end up in tracebacks and log lines: never with the database password.
        for name, value in super().__repr_args__():
            yield name, hide_url_password(value) if name == "database_url" else value

    @cached_property
    def sources(self) -> ModelSources:
        if self.model_dir is not None:
            sources = ModelSources.from_model_dir(self.model_dir, vae=self.vae is not None)
            # `SAFETY_CHECKER=none` still turns the check off with a model folder.
            return sources if self.safety_checker is not None else replace(sources, safety_checker=None)
        return ModelSources(**{f.name: getattr(self, f.name) for f in fields(ModelSources)})


class SettingsError(UserFacingError):
    code = "bad_setting"


# What a value of each kind looks like, in words an operator editing bot.env understands.
_EXPECTED = {
    "int_parsing": "a whole number, like 100",
    "int_from_float": "a whole number, like 100",
    "float_parsing": "a number, like 1.5",
    "bool_parsing": "true or false",
    "path_type": "a folder or file path",
}


def describe_error(error: ValidationError, env_file: Path | str | None) -> str:
    """One line naming the first bad setting as it is spelled in bot.env, and what it expects."""
    first = error.errors()[0]
    name = str(first["loc"][0]).upper() if first["loc"] else "(settings)"
    kind = first["type"]
    context = first.get("ctx") or {}
    if kind in _EXPECTED:
        expected = _EXPECTED[kind]
    elif kind == "literal_error":
        expected = "one of " + str(context.get("expected", "")).replace("'", "")
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {"greater_than_equal": "at least", "greater_than": "more than",
                 "less_than_equal": "at most", "less_than": "less than"}[kind]
        expected = f"a number {words} {next(iter(context.values()), '')}"
    else:
        expected = str(first["msg"]).removeprefix("Value error, ")
    where = f"{env_file} or the environment" if env_file else "the environment"
    value = first.get("input")
    shown = f" is {str(value)!r}" if isinstance(value, str | int | float) and len(str(value)) <= 60 else " is wrong"
    return f"Setting {name} ({where}){shown}: expected {expected}."


def load_settings(env_file: Path | str | None = "bot.env", **overrides: object) -> Settings:
    """Settings from `env_file` (if present) and the environment; `overrides` win (CLI flags).

    A value that does not parse stops here with one line naming the setting (`SettingsError`).
    """
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(_env_file=env_file, **clean)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError(describe_error(exc, env_file)) from None

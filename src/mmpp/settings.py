"""One settings object for the whole bot, read from the environment and an env file.

Every field has its words in `settings_notes.py`; `python -m mmpp.settings_doc` writes `bot.env.example` and
docs/configuration.md from both (a test fails when they are stale). The environment variable is the
field name in capitals.
The env file is `--env-file` when given, else `$MMPP_ENV_FILE`, else `bot.env` in the current
directory (`resolve_env_file`); the settings remember which one they read (`Settings.env_file`).
A value that does not parse stops `load_settings` with one line (`settings_errors.py`); where each
model comes from is `ModelSources` (`model_sources.py`), which `Settings.sources` builds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mmpp.logs import hide_url_password
from mmpp.model_sources import ModelSources
from mmpp.settings_errors import SettingsError, describe_error

# What DEVICE may say; `mmpp.inference.device` checks that this machine has it.
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DType = Literal["auto", "float32", "float16", "bfloat16"]

# The environment variable naming the env file when `--env-file` is not given (a service manager
# or a container sets it; it cannot live in the file it names).
ENV_FILE_VARIABLE = "MMPP_ENV_FILE"
DEFAULT_ENV_FILE = "bot.env"
# The SQLite file's name inside DATA_DIR when DATABASE_URL is not set.
SQLITE_FILE = "mmpp.sqlite3"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file="bot.env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        # `KEY=` in bot.env means "use the default", as a newcomer filling in the example expects.
        env_ignore_empty=True,
    )
    # Which env file these settings were read from (None: the environment alone); see `env_file`.
    _env_file: Path | None = PrivateAttr(default=None)

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
        description="Fernet key shared by the bot and its workers (required with QUEUE_BACKEND=redis): seals faces "
        "and results, signs heartbeats, claims and cancel flags in Redis.",
    )
    # Docker and systemd hand secrets over as files (/run/secrets/NAME, $CREDENTIALS_DIRECTORY/NAME),
    # which keeps the key out of `docker inspect` and the process environment.
    queue_secret_file: Path | None = Field(
        default=None, description="A file holding QUEUE_SECRET (a compose or systemd secret); QUEUE_SECRET wins."
    )
    batch_timeout_s: float = Field(
        default=15 * 60, gt=0,
        description="Longest one remote batch may run: the worker stops it, the bot tells its members.",
    )
    # --- gateway shards (issue 12) -------------------------------------------------------------
    shard_count: int | None = Field(default=None, ge=1, description="Total shards; default: Discord's advice.")
    shard_ids: str | None = Field(default=None, description="This process's shards: `0-3` or `0,1,2,3`.")

    # --- database and files ---------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("."),
        description="Where the bot writes its files (the SQLite database); made if missing. "
        "Default: the current directory.",
    )
    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{SQLITE_FILE}",
        description=f"SQLAlchemy URL of the database; default: the SQLite file {SQLITE_FILE} in DATA_DIR.",
    )
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
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="Serve /metrics (Prometheus), /healthz and /readyz on this port; empty = off.",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="The address the metrics server listens on; 0.0.0.0 to publish it (in a container, say).",
    )

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

    @field_validator("queue_secret_file")
    @classmethod
    def _secret_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("a file that exists and holds the key")
        return value

    @model_validator(mode="after")
    def _secret_from_file(self) -> Settings:
        if self.queue_secret is None and self.queue_secret_file is not None:
            self.queue_secret = SecretStr(self.queue_secret_file.read_text(encoding="utf-8").strip())
        return self

    @model_validator(mode="after")
    def _database_in_data_dir(self) -> Settings:
        # Only the default moves: an explicit DATABASE_URL (or the old default, spelled out) is kept.
        if "database_url" not in self.model_fields_set and self.data_dir != Path("."):
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / SQLITE_FILE}"
        return self

    def __eq__(self, other: object) -> bool:
        # Equal settings are equal values: which file they were read from is where they came from.
        if not isinstance(other, Settings):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # as every pydantic model: mutable, so unhashable

    @property
    def env_file(self) -> Path | None:
        """The env file these settings were read from, whether or not it existed."""
        return self._env_file

    @property
    def env_file_name(self) -> str:
        """The env file's name as an operator typed it, for "put it in …" advice."""
        return str(self._env_file) if self._env_file is not None else DEFAULT_ENV_FILE

    def env_file_words(self) -> str:
        """Where settings came from, in words for a start line or an error:
        "bot.env (/srv/mmpp/bot.env) and the environment"."""
        path = self._env_file
        if path is None:
            return "the environment alone"
        where = path.resolve()
        shown = f"{path} ({where})" if path.exists() else f"{path} ({where}, which does not exist)"
        return f"{shown} and the environment"

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


def resolve_env_file(given: Path | str | None) -> Path:
    """`--env-file` when given, else `$MMPP_ENV_FILE`, else `bot.env` in the current directory."""
    if given:
        return Path(given)
    return Path(os.environ.get(ENV_FILE_VARIABLE) or DEFAULT_ENV_FILE)


def load_settings(env_file: Path | str | None = DEFAULT_ENV_FILE, **overrides: object) -> Settings:
    """Settings from `env_file` (if present) and the environment; `overrides` win (CLI flags).

    `env_file=None` reads the environment alone. A value that does not parse stops here with one
    line naming the setting (`SettingsError`).
    """
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(_env_file=env_file, **clean)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError(describe_error(exc, env_file)) from None
    settings._env_file = Path(env_file) if env_file is not None else None
    return settings

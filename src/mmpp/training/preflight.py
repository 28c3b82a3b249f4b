"""Checks that turn an hour-late crash into one line before any model loads.

Every folder the run will write to is created and written to (a probe file, written and deleted:
permission bits say nothing for root or a read-only mount), the optional packages the options name
are imported, and a checkpoint to resume from is compared with this run's LoRA layout.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from mmpp.errors import UserFacingError
from mmpp.training.checkpoints import CHECKPOINT_WEIGHTS, CheckpointError, find_resume_point
from mmpp.training.config import ConfigError, TrainConfig

SETTINGS_FILE = "mmpp_training.json"
# What decides the shapes of the saved LoRA layers and optimizer state: a checkpoint made with other
# values cannot be loaded into this run.
RESUME_SETTINGS = ("rank", "train_text_encoder", "use_dora", "optimizer")
_OPTION = {name: f"--{name.replace('_', '-')}" for name in RESUME_SETTINGS}


class UnwritableError(UserFacingError):
    code = "unwritable_output"


def writable_problem(folder: Path) -> str | None:
    """None when a file can be created in `folder` (made if missing), else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".mmpp-write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def check_writable(folders: dict[str, Path]) -> None:
    for option, folder in folders.items():
        problem = writable_problem(folder)
        if problem:
            raise UnwritableError(f"{option}: cannot write to {folder} ({problem}); choose a folder you can write to")


def folders_to_write(config: TrainConfig, *, tensorboard: bool) -> dict[str, Path]:
    folders = {"--output": config.output, "--output (checkpoints)": config.checkpoints_dir}
    if config.validation_prompt:
        folders["--output (validation images)"] = config.validation_dir
    if tensorboard:
        folders["--output (TensorBoard logs)"] = config.logs_dir
    if config.num_class_images and config.class_data_dir is not None:
        folders["--prior-data (class images to draw)"] = config.class_data_dir
    return folders


def fallback_folder(style_name: str) -> Path:
    """Somewhere a finished LoRA can go when its folder failed at the end: the working folder, home, /tmp."""
    name = f"mmpp-{style_name}-rescued-{uuid.uuid4().hex[:8]}"
    for base in (Path.cwd(), Path.home(), Path(tempfile.gettempdir())):
        if writable_problem(base / name) is None:
            return base / name
    raise UnwritableError(f"no folder could be written to (tried {Path.cwd()}, {Path.home()}, "
                          f"{tempfile.gettempdir()})")


def has_package(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_packages(config: TrainConfig, device: torch.device) -> None:
    if config.optimizer == "prodigy" and not has_package("prodigyopt"):
        raise ConfigError("--optimizer prodigy needs the prodigyopt package: pip install 'mmpp-bot[train]'")
    if config.optimizer == "adamw8bit":
        from mmpp.training.optimizers import eight_bit_problem

        problem = eight_bit_problem(device)
        if problem:
            raise ConfigError(f"--optimizer adamw8bit: {problem}; use --optimizer adamw")
    if config.report_to == "tensorboard" and not has_package("tensorboard"):
        raise ConfigError("--report-to tensorboard needs the tensorboard package: pip install 'mmpp-bot[train]'")


# --- resume --------------------------------------------------------------------------------------


def run_settings(config: TrainConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in RESUME_SETTINGS}


def write_settings(checkpoint: Path, config: TrainConfig) -> None:
    (checkpoint / SETTINGS_FILE).write_text(json.dumps(run_settings(config), indent=1) + "\n", encoding="utf-8")


def read_settings(checkpoint: Path) -> dict[str, Any]:
    """The settings a checkpoint was made with; for one without the file, what its LoRA file shows."""
    path = checkpoint / SETTINGS_FILE
    if path.is_file():
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is unreadable ({exc})") from exc
    weights = checkpoint / CHECKPOINT_WEIGHTS
    try:
        with safe_open(str(weights), "pt") as f:
            keys = list(f.keys())
            metadata = json.loads((f.metadata() or {}).get("lora_adapter_metadata", "{}"))
    except (OSError, SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint} holds no readable {CHECKPOINT_WEIGHTS} ({exc})") from exc
    found: dict[str, Any] = {"train_text_encoder": any(k.startswith("text_encoder") for k in keys)}
    if "unet.r" in metadata:
        found["rank"] = metadata["unet.r"]
    if "unet.use_dora" in metadata:
        found["use_dora"] = metadata["unet.use_dora"]
    return found


def check_resume(config: TrainConfig) -> Path | None:
    """The checkpoint to resume from, after making sure it fits this run's settings."""
    if not config.resume_from_checkpoint:
        return None
    path = find_resume_point(config.checkpoints_dir, config.resume_from_checkpoint)
    if path is None:
        return None
    saved = read_settings(path)
    ours = run_settings(config)
    for name in RESUME_SETTINGS:
        if name in saved and saved[name] != ours[name]:
            option = _OPTION[name]
            raise CheckpointError(
                f"{option}: this run has {_shown(ours[name])} but {path.name} was trained with "
                f"{_shown(saved[name])}; resume with {_flag(name, saved[name])}, or train afresh "
                "in another --output folder"
            )
    return path


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "it on" if value else "it off"
    return str(value)


def _flag(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return _OPTION[name] if value else f"--no-{_OPTION[name].removeprefix('--')}"
    return f"{_OPTION[name]} {value}"


def check_all(config: TrainConfig, *, tensorboard: bool, device: torch.device) -> Path | None:
    """Everything that can be known before models load; returns the checkpoint to resume from."""
    check_packages(config, device)
    check_writable(folders_to_write(config, tensorboard=tensorboard))
    return check_resume(config)

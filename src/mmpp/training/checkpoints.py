"""Checkpoints under OUTPUT/checkpoints/checkpoint-N: accelerate's state (optimizer, scheduler, scaler,
RNG) with only the LoRA weights instead of full model copies, and resume from the newest one.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers import StableDiffusionXLPipeline
from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft, convert_unet_state_dict_to_peft
from peft.utils import set_peft_model_state_dict

from mmpp.errors import UserFacingError
from mmpp.logs import log_event
from mmpp.training.export import save_lora

log = logging.getLogger(__name__)

_NAME = re.compile(r"^checkpoint-(\d+)$")
CHECKPOINT_WEIGHTS = "pytorch_lora_weights.safetensors"


class CheckpointError(UserFacingError):
    code = "bad_checkpoint"


def checkpoint_step(path: Path) -> int:
    match = _NAME.match(path.name)
    if not match:
        raise CheckpointError(f"{path}: a checkpoint folder is named checkpoint-STEP")
    return int(match.group(1))


def list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=checkpoint_step)


def find_resume_point(checkpoints_dir: Path, wanted: str) -> Path | None:
    """'latest' is the newest checkpoint (None when there is none yet); anything else names one."""
    if wanted == "latest":
        found = list_checkpoints(checkpoints_dir)
        return found[-1] if found else None
    path = Path(wanted).expanduser()
    if not path.is_absolute() and not path.exists():
        path = checkpoints_dir / wanted
    if not path.is_dir():
        raise CheckpointError(
            f"--resume-from-checkpoint: {wanted} does not exist (use 'latest' or a checkpoint folder)"
        )
    checkpoint_step(path)
    return path


def prune(checkpoints_dir: Path, keep: int | None) -> None:
    """Make room for one more checkpoint within the limit."""
    if keep is None:
        return
    found = list_checkpoints(checkpoints_dir)
    for old in found[: max(0, len(found) - keep + 1)]:
        shutil.rmtree(old)
        log_event(log, logging.INFO, "checkpoint removed", path=str(old))


def register_lora_hooks(
    accelerator: Accelerator,
    unet: torch.nn.Module,
    text_encoders: tuple[torch.nn.Module, torch.nn.Module] | None,
    after_load: Callable[[], None] = lambda: None,
) -> None:
    """Make `save_state`/`load_state` write and read LoRA layers only: a full SDXL UNet per checkpoint
    would be 5 GB where the LoRA is a few MB."""

    # Every model handed to `accelerator.prepare` is one of these, so the hooks take them all.
    def save_hook(models: list[torch.nn.Module], weights: list[dict], output_dir: str) -> None:
        if accelerator.is_main_process:
            save_lora(Path(output_dir), unet, text_encoders, weight_name=CHECKPOINT_WEIGHTS)
        weights.clear()  # so accelerate does not also save the full models

    def load_hook(models: list[torch.nn.Module], input_dir: str) -> None:
        models.clear()
        state, _ = StableDiffusionXLPipeline.lora_state_dict(
            input_dir, weight_name=CHECKPOINT_WEIGHTS, use_safetensors=True
        )
        unet_state = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
        _load_into(unet, convert_unet_state_dict_to_peft(unet_state), input_dir)
        if text_encoders is not None:
            for prefix, encoder in zip(("text_encoder.", "text_encoder_2."), text_encoders, strict=True):
                part = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
                _load_into(encoder, convert_state_dict_to_peft(convert_state_dict_to_diffusers(part)), input_dir)
        after_load()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def _load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    result = set_peft_model_state_dict(model, state, adapter_name="default")
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise CheckpointError(
            f"{source}: the checkpoint's LoRA does not fit this run (e.g. {unexpected[0]}); "
            "resume with the same --rank and --train-text-encoder setting"
        )

"""The end of a run: the LoRA and style.json, the kohya copy, the loss plot; a rescue when the folder fails.

The output folder was written to before any model loaded, but a disk can fill or a mount vanish
in the hours between: then the LoRA still exists only in memory, so it goes to a folder that works
and the one-line error says where.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.utils import (
    convert_state_dict_to_diffusers,
    convert_state_dict_to_kohya,
    convert_state_dict_to_peft,
    convert_unet_state_dict_to_peft,
)
from safetensors.torch import load_file, save_file

from mmpp.logs import log_event
from mmpp.training.config import TrainConfig
from mmpp.training.export import save_lora, write_trained_style
from mmpp.training.plot import PLOT_FILE, write_plot
from mmpp.training.preflight import UnwritableError, fallback_folder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class History:
    """Every trained step's loss and learning rate, this run's and (after a resume) the earlier ones'."""

    steps: Sequence[int]
    losses: Sequence[float]
    lrs: Sequence[float]


def kohya_file(config: TrainConfig) -> Path:
    """Named after the style, as the advanced reference script names its WebUI copy after the run."""
    return config.output / f"{config.style_name}.safetensors"


def save_kohya(lora: Path, target: Path, alpha: float) -> Path:
    """The diffusers-layout LoRA in kohya's layout (`lora_unet_…`, `lora_te1_…`, `lora_te2_…`), for A1111 and
    ComfyUI.

    What diffusers' converter (as the advanced reference script calls it) gets wrong here: it leaves
    the diffusers `lora.down` names unconverted, kohya's text-encoder names need the `text_model`
    level that transformers 5's first text encoder no longer has, and it writes alpha = rank, so a
    LoRA trained with another --lora-alpha would lose its strength. DoRA is refused (see config.py).
    """
    state = load_file(str(lora))
    peft: dict[str, torch.Tensor] = {}
    unet = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
    peft.update({f"unet.{k}": v for k, v in convert_unet_state_dict_to_peft(unet).items()})
    for prefix in ("text_encoder.", "text_encoder_2."):
        part = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if not part:
            continue
        for key, value in convert_state_dict_to_peft(convert_state_dict_to_diffusers(part)).items():
            peft[prefix + (key if key.startswith("text_model.") else f"text_model.{key}")] = value
    kohya = convert_state_dict_to_kohya(peft)
    fixed = {k: torch.tensor(float(alpha)) if k.endswith(".alpha") else v.contiguous() for k, v in kohya.items()}
    save_file(fixed, str(target))
    return target


def write_outputs(
    config: TrainConfig,
    unet: torch.nn.Module,
    text_encoders: tuple[torch.nn.Module, torch.nn.Module] | None,
    *,
    history: History,
    sample: Path | None,
) -> Path:
    """Write everything into --output; on a write error, the LoRA and style.json go to a rescue folder
    and an UnwritableError says where. Returns the LoRA's path."""
    c = config
    try:
        lora = save_lora(c.output, unet, text_encoders)
        if c.output_kohya_format:
            path = save_kohya(lora, kohya_file(c), c.alpha)
            log_event(log, logging.INFO, "kohya copy written", path=str(path))
        if history.steps:
            write_plot(c.output / PLOT_FILE, history.steps, history.losses, history.lrs,
                       title=f"{c.style_name}: loss and learning rate")
        write_trained_style(c.output, name=c.style_name, trigger=c.trigger, description=c.description,
                            display_name=c.display_name, sample=sample)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        rescue = fallback_folder(c.style_name) / c.style_name
        save_lora(rescue, unet, text_encoders)
        write_trained_style(rescue, name=c.style_name, trigger=c.trigger, description=c.description,
                            display_name=c.display_name)
        log_event(log, logging.ERROR, "output folder failed; style rescued", folder=str(c.output),
                  rescued=str(rescue), error=reason)
        raise UnwritableError(
            f"--output: could not write to {c.output} ({reason}); the trained style was saved to {rescue} "
            "instead (move that folder into STYLES_DIR to publish it)"
        ) from exc
    return lora

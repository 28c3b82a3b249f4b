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
from diffusers.utils import convert_all_state_dict_to_peft, convert_state_dict_to_kohya
from safetensors.torch import load_file, save_file

from mmpp.logs import log_event
from training.config import TrainConfig
from training.export import save_lora, write_trained_style
from training.plot import PLOT_FILE, write_plot
from training.preflight import UnwritableError, fallback_folder

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
    ComfyUI. diffusers' converter writes alpha = rank; the real alpha is written instead, so a LoRA
    trained with --lora-alpha other than the rank keeps its strength."""
    kohya = convert_state_dict_to_kohya(convert_all_state_dict_to_peft(load_file(str(lora))))
    renamed: dict[str, torch.Tensor] = {}
    for key, value in kohya.items():
        # diffusers renames DoRA magnitudes only for text encoders; kohya calls them all dora_scale.
        key = key.replace("lora_magnitude_vector", "dora_scale")
        renamed[key] = torch.tensor(float(alpha)) if key.endswith(".alpha") else value.contiguous()
    save_file(renamed, str(target))
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

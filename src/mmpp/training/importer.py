"""`mmpp style import`: a LoRA trained elsewhere becomes a style folder.

A file already in the diffusers layout is copied as it is. A kohya / A1111 / ComfyUI file is read
by `StableDiffusionXLLoraLoaderMixin.lora_state_dict` (which renames kohya keys, SGM block numbers
included) and written back in the diffusers layout. Kohya stores a per-layer `alpha`; it is folded
into the up weights first, because the re-saved file has no alphas and the loader would otherwise
assume alpha == rank. Before anything is written, every layer is checked against the base model's
shapes, so a LoRA for another model family fails here rather than at bot start.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_peft, convert_unet_state_dict_to_peft
from diffusers.utils.state_dict_utils import StateDictType, _load_sft_state_dict_metadata
from safetensors import SafetensorError
from safetensors.torch import load_file

from mmpp.errors import UserFacingError
from mmpp.inference.style_definition import LoraSource, StyleDefinition
from mmpp.inference.style_folder import DEFINITION_FILE, StyleError, write_style
from mmpp.logs import log_event
from mmpp.training.export import LORA_FILE

log = logging.getLogger(__name__)

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
_KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")


class LoraImportError(UserFacingError):
    code = "bad_lora"


def read_lora_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise LoraImportError(f"{path} does not exist")
    if path.suffix != ".safetensors":
        # Pickled .ckpt/.pt files can run code when loaded; a file from the internet must not.
        raise LoraImportError(f"{path}: only .safetensors LoRA files are imported")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise LoraImportError(f"{path} is not a readable safetensors file ({exc})") from exc


def is_diffusers_layout(state: dict[str, torch.Tensor]) -> bool:
    return bool(state) and all(k.split(".", 1)[0] in COMPONENTS and "lora" in k for k in state)


def is_kohya_layout(state: dict[str, torch.Tensor]) -> bool:
    return bool(state) and all(k.startswith(_KOHYA_PREFIXES) for k in state)


def fold_kohya_alphas(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """W + (alpha / rank) * up @ down  ==  W + (up * alpha / rank) @ down, with no alpha left to read."""
    folded = {k: v for k, v in state.items() if not k.endswith(".alpha")}
    for key, alpha in state.items():
        if not key.endswith(".alpha"):
            continue
        layer = key.removesuffix(".alpha")
        down, up = folded.get(f"{layer}.lora_down.weight"), folded.get(f"{layer}.lora_up.weight")
        if down is None or up is None:
            continue
        scale = float(alpha) / down.shape[0]
        folded[f"{layer}.lora_up.weight"] = (up.float() * scale).to(up.dtype)
    return folded


Parts = dict[str, dict[str, torch.Tensor]]


def split_to_peft(state: dict[str, torch.Tensor]) -> Parts:
    """`unet.` / `text_encoder.` / `text_encoder_2.` keys into per-component PEFT (`lora_A`/`lora_B`) dicts."""
    parts: Parts = {}
    for component in COMPONENTS:
        prefix = f"{component}."
        part = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if not part:
            continue
        if not any(".lora_A." in k for k in part):
            old_text_keys = any("lora_linear_layer" in k or "_lora." in k for k in part)
            if component != "unet" and old_text_keys:
                # diffusers' kohya conversion names text-encoder layers `to_q_lora` for `q_proj`.
                part = convert_state_dict_to_peft(part, original_type=StateDictType.DIFFUSERS_OLD)
            else:
                part = convert_unet_state_dict_to_peft(part)
        parts[component] = part
    return parts


def _module_name(name: str, modules: dict[str, torch.nn.Module]) -> str | None:
    """The module `name` means in this model. transformers 5 dropped CLIP's `text_model.` level, so
    LoRAs made before it (and kohya's, as diffusers converts them) spell text-encoder layers with it."""
    if name in modules:
        return name
    other = name.removeprefix("text_model.") if name.startswith("text_model.") else f"text_model.{name}"
    return other if other in modules else None


def fit_to_model(parts: Parts, base_model: str, source: Path) -> tuple[Parts, bool]:
    """Every LoRA layer must name a module of the base model and match its shape; returns the parts
    with text-encoder names spelled as this transformers spells them, and whether any were renamed."""
    from accelerate import init_empty_weights
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with init_empty_weights():
        models: dict[str, torch.nn.Module] = {}
        try:
            if "unet" in parts:
                config = UNet2DConditionModel.load_config(base_model, subfolder="unet")
                models["unet"] = UNet2DConditionModel.from_config(config)
            for component, cls in (("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection)):
                if component in parts:
                    models[component] = cls(CLIPTextConfig.from_pretrained(base_model, subfolder=component))
        except (OSError, ValueError) as exc:
            raise LoraImportError(f"Could not read the base model's configuration from {base_model}: {exc}") from exc
    fitted: Parts = {}
    renamed = False
    for component, part in parts.items():
        modules = dict(models[component].named_modules())
        fitted[component] = {}
        for key, tensor in part.items():
            name, _, which = key.partition(".lora_")
            if not which:  # e.g. a DoRA magnitude: kept, nothing to check
                fitted[component][key] = tensor
                continue
            found = _module_name(name, modules)
            if found is None:
                raise LoraImportError(
                    f"{source}: layer '{component}.{name}' does not exist in {base_model}; "
                    "this LoRA was made for another model (an SDXL LoRA is needed)"
                )
            renamed |= found != name
            fitted[component][f"{found}.lora_{which}"] = tensor
            module = modules[found]
            weight = getattr(module, "weight", None)
            if weight is None or weight.ndim < 2:
                continue
            out_features, in_features = weight.shape[0], weight.shape[1]
            down = which.startswith("A.")
            expected = in_features if down else out_features
            actual = tensor.shape[1] if down else tensor.shape[0]
            if actual != expected:
                raise LoraImportError(
                    f"{source}: layer '{component}.{name}' has size {actual} where {base_model} has {expected}; "
                    "this LoRA was made for another model (an SDXL LoRA is needed)"
                )
    return fitted, renamed


def import_lora(
    source: Path,
    *,
    name: str,
    styles_dir: Path,
    base_model: str,
    trigger_words: list[str] | None = None,
    scale: float = 1.0,
    description: str = "",
    unet_only: bool = False,
    force: bool = False,
) -> Path:
    """Write STYLES_DIR/NAME/{lora.safetensors, style.json}; returns the style folder."""
    definition = _definition(name, trigger_words or [], scale, description, source)
    folder = styles_dir / name
    if (folder / DEFINITION_FILE).exists() and not force:
        raise LoraImportError(f"{folder} already holds a style; pass --force to replace it")

    raw = read_lora_file(source)
    metadata: dict[str, object] = {}
    if is_diffusers_layout(raw):
        state = raw
        metadata = _load_sft_state_dict_metadata(str(source)) or {}
    elif is_kohya_layout(raw):
        try:
            state, alphas = StableDiffusionXLPipeline.lora_state_dict(
                fold_kohya_alphas(raw), unet_config=_unet_config(base_model)
            )
        except (ValueError, KeyError) as exc:
            raise LoraImportError(f"{source}: diffusers could not convert this LoRA ({exc})") from exc
        if alphas:
            raise LoraImportError(f"{source}: some alphas could not be matched to their layers")
    else:
        raise LoraImportError(
            f"{source} is not an SDXL LoRA in the diffusers or kohya layout (first key: {next(iter(raw), 'none')})"
        )
    parts = split_to_peft(state)
    if "unet" not in parts:
        raise LoraImportError(f"{source} has no UNet layers; a text-encoder-only LoRA does not change the style")
    dropped = unet_only and len(parts) > 1
    if unet_only:
        parts = {"unet": parts["unet"]}
    parts, renamed = fit_to_model(parts, base_model, source)

    folder.mkdir(parents=True, exist_ok=True)
    copied = state is raw and not renamed and not dropped
    if copied:
        shutil.copyfile(source, folder / LORA_FILE)
    else:
        layers = {f"{c}_lora_layers": parts.get(c) for c in COMPONENTS}
        configs = {f"{c}_lora_adapter_metadata": _unpack(metadata, c) for c in COMPONENTS if c in parts}
        StableDiffusionXLPipeline.save_lora_weights(
            save_directory=str(folder), weight_name=LORA_FILE, **layers, **configs
        )
    path = write_style(folder, definition)
    log_event(log, logging.INFO, "style imported", style=name, source=str(source), copied=copied,
              components=",".join(parts), folder=str(folder))
    return path.parent


def _unpack(metadata: dict[str, object], component: str) -> dict[str, object] | None:
    """The adapter config saved for one component (`unet.r` -> `r`), which keeps a non-default alpha."""
    prefix = f"{component}."
    found = {k.removeprefix(prefix): v for k, v in metadata.items() if k.startswith(prefix)}
    return found or None


def _unet_config(base_model: str) -> dict | None:
    try:
        return dict(UNet2DConditionModel.load_config(base_model, subfolder="unet"))
    except (OSError, ValueError) as exc:
        raise LoraImportError(f"Could not read the base model's UNet configuration from {base_model}: {exc}") from exc


def _definition(name: str, triggers: list[str], scale: float, description: str, source: Path) -> StyleDefinition:
    try:
        return StyleDefinition(
            name=name,
            description=description or f"Imported from {source.name}.",
            trigger_words=triggers,
            lora=LoraSource(source=LORA_FILE, scale=scale),
        )
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": ("name",), "msg": str(exc)}
        option = {"name": "--name", "lora.scale": "--scale"}.get(".".join(str(p) for p in first["loc"]), "--name")
        raise StyleError(f"{option}: {str(first['msg']).removeprefix('Value error, ')}") from exc

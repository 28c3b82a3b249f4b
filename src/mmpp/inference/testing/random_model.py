"""The full-size production models with random weights: SDXL base, the canny ControlNet, the ViT-H
image encoder, the Plus-face IP-Adapter and a rank-64 LoRA style, put together.

No figure about speed or memory means anything unless it comes from the size of model the bot
serves, and nothing here can download it. So the exact production configs are written down
(`random_configs`, checked against the published parameter counts) and the weights are drawn at
random, one module per part: `random_sdxl`, `random_ip_adapter`, `random_safety`, `random_lora`.

Two ways out:
- `make_random_model(DIR)` writes bf16 safetensors in the same layout as `make_tiny_model`, so the
  production loader (`--model-dir DIR`) loads it (with a full-size safety checker, which never flags);
- `build_random_pipeline(device)` builds everything directly on a device in memory (no 10 GB of
  files), for `bench/gpu.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline
from safetensors.torch import save_file

from mmpp.inference.testing.random_configs import PLUS_FACE_WEIGHT_NAME
from mmpp.inference.testing.random_ip_adapter import (
    build_image_encoder,
    build_resampler,
    cross_attention_hidden_sizes,
    nest_ip_adapter,
    plus_ip_adapter_state_dict,
)
from mmpp.inference.testing.random_lora import write_lora_style
from mmpp.inference.testing.random_safety import build_safety_model, safety_image_processor
from mmpp.inference.testing.random_sdxl import (
    build_controlnet,
    build_text_encoders,
    build_unet,
    build_vae,
    clip_tokenizer,
    sdxl_scheduler,
)
from mmpp.inference.testing.random_spec import FULL, RandomModelSpec, default_dtype


def component_builders(spec: RandomModelSpec = FULL) -> dict[str, Any]:
    """Name -> zero-argument builder, for counting parameters on the meta device."""
    encoders = lambda: build_text_encoders(spec)  # noqa: E731
    return {
        "unet": lambda: build_unet(spec),
        "controlnet": lambda: build_controlnet(spec),
        "vae": lambda: build_vae(spec),
        "text_encoder": lambda: encoders()[0],
        "text_encoder_2": lambda: encoders()[1],
        "image_encoder": lambda: build_image_encoder(spec),
        "image_projection": lambda: build_resampler(spec),
        "safety_checker": lambda: build_safety_model(spec),
    }


def count_parameters(spec: RandomModelSpec = FULL) -> dict[str, int]:
    """Parameters per component, built on the meta device: no memory, a second or two."""
    counts: dict[str, int] = {}
    for name, build in component_builders(spec).items():
        with torch.device("meta"):
            module = build()
        counts[name] = sum(p.numel() for p in module.parameters())
        if name == "unet":
            cross_dim = spec.resampler["output_dims"]
            counts["ip_adapter_layers"] = sum(2 * cross_dim * h for h in cross_attention_hidden_sizes(module))
    return counts


def random_components(
    spec: RandomModelSpec = FULL, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
) -> dict[str, Any]:
    """Every model of the pipeline with random weights, made directly on `device` in `dtype`."""
    torch.manual_seed(seed)
    # One seed for all: the order below is the order the weights are drawn in, so it fixes them.
    with torch.device(device), default_dtype(dtype):
        text_encoder, text_encoder_2 = build_text_encoders(spec)
        components = {
            "unet": build_unet(spec),
            "controlnet": build_controlnet(spec),
            "vae": build_vae(spec),
            "text_encoder": text_encoder,
            "text_encoder_2": text_encoder_2,
            "image_encoder": build_image_encoder(spec),
        }
    vocab_size = spec.text_encoder["vocab_size"]
    components["tokenizer"] = clip_tokenizer(vocab_size)
    components["tokenizer_2"] = clip_tokenizer(vocab_size)
    components["scheduler"] = sdxl_scheduler()
    return components


def build_random_pipeline(
    spec: RandomModelSpec = FULL, *, device: torch.device | str = "cuda", dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
) -> StableDiffusionXLControlNetPipeline:
    """The production pipeline (ControlNet, Plus IP-Adapter with its image encoder) in memory on `device`.

    The same `load_ip_adapter` call as the loader, fed a state dict instead of a file. Styles are
    added by the caller, through the production style loading.
    """
    from mmpp.inference.loader import quiet_libraries

    quiet_libraries()
    components = random_components(spec, device=device, dtype=dtype, seed=seed)
    pipe = StableDiffusionXLControlNetPipeline(**components, add_watermarker=False)
    pipe.load_ip_adapter(
        nest_ip_adapter(plus_ip_adapter_state_dict(pipe.unet, spec)),
        subfolder=None,
        weight_name=None,
        image_encoder_folder=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_random_model(
    model_dir: Path, spec: RandomModelSpec = FULL, *, dtype: torch.dtype = torch.bfloat16, seed: int = 0,
    on_part: Any = None,
) -> Path:
    """Write the random model in `make_tiny_model`'s layout (bf16 safetensors; about 12.5 GB at full size):
    sdxl/, vae/, controlnet/, ip-adapter/{sdxl_models,models/image_encoder}/, safety-checker/, styles/.

    `on_part(name)` is called as each part is written, for a progress bar.
    """
    from mmpp.inference.loader import quiet_libraries

    quiet_libraries()
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    report = on_part or (lambda name: None)
    components = random_components(spec, device="cpu", dtype=dtype, seed=seed)
    image_encoder = components.pop("image_encoder")
    controlnet = components.pop("controlnet")
    sdxl = StableDiffusionXLPipeline(**components, add_watermarker=False)
    sdxl.save_pretrained(model_dir / "sdxl", safe_serialization=True)
    # VAE= (madebyollin/sdxl-vae-fp16-fix in production) has the base VAE's architecture.
    components["vae"].save_pretrained(model_dir / "vae", safe_serialization=True)
    report("sdxl")
    controlnet.save_pretrained(model_dir / "controlnet", safe_serialization=True)
    report("controlnet")
    ip_dir = model_dir / "ip-adapter"
    image_encoder.save_pretrained(ip_dir / "models" / "image_encoder", safe_serialization=True)
    (ip_dir / "sdxl_models").mkdir(parents=True, exist_ok=True)
    save_file(plus_ip_adapter_state_dict(sdxl.unet, spec), str(ip_dir / "sdxl_models" / PLUS_FACE_WEIGHT_NAME))
    report("ip-adapter")
    with default_dtype(dtype):
        build_safety_model(spec).save_pretrained(model_dir / "safety-checker", safe_serialization=True)
    safety_image_processor(spec).save_pretrained(model_dir / "safety-checker")
    report("safety-checker")
    write_lora_style(model_dir, "random-style", sdxl.unet, rank=spec.lora_rank, seed=seed + 1)
    report("styles")
    return model_dir

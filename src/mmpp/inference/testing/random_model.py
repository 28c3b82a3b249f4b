"""The full-size production models with random weights: SDXL base, the canny ControlNet, the ViT-H
image encoder, the Plus-face IP-Adapter and a rank-64 LoRA style.

No figure about speed or memory means anything unless it comes from the size of model the bot
serves, and nothing here can download it. So the exact production configs are written down below
(copied from the published `config.json` files; `tests/engine/test_random_model.py` checks the
parameter counts on the meta device so they cannot drift) and the weights are drawn at random.

Two ways out:
- `make_random_model(DIR)` writes bf16 safetensors in the same layout as `make_tiny_model`, so the
  production loader (`--model-dir DIR`) loads it (with a full-size safety checker, which never flags);
- `build_random_pipeline(device)` builds everything directly on a device in memory (no 10 GB of
  files), for `bench/gpu.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    EulerDiscreteScheduler,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.models.embeddings import IPAdapterPlusImageProjection
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from safetensors.torch import save_file
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from mmpp.inference.testing.ip_adapter_layout import resampler_to_original

if TYPE_CHECKING:
    from mmpp.inference.safety import SafetyChecker

# --- stabilityai/stable-diffusion-xl-base-1.0 -------------------------------------------------------
SDXL_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}

# The base repo's VAE and madebyollin/sdxl-vae-fp16-fix (production's VAE setting) share this
# architecture; the fp16-fix one does not need the fp32 upcast, which only matters in float16.
SDXL_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": False,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# CLIP ViT-L/14's text tower. bos/eos ids are the published configs' (0 and 2): with eos_token_id 2
# transformers pools at the highest token id, which is <|endoftext|> (49407) in CLIP's vocabulary.
SDXL_TEXT_ENCODER: dict[str, Any] = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}

# OpenCLIP ViT-bigG/14's text tower.
SDXL_TEXT_ENCODER_2: dict[str, Any] = {
    **SDXL_TEXT_ENCODER,
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
}

SDXL_SCHEDULER: dict[str, Any] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "use_karras_sigmas": False,
}

# --- diffusers/controlnet-canny-sdxl-1.0 -----------------------------------------------------------
CONTROLNET_CANNY_SDXL: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "class_embed_type": None,
    "conditioning_channels": 3,
    "conditioning_embedding_out_channels": [16, 32, 96, 256],
    "controlnet_conditioning_channel_order": "rgb",
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "global_pool_conditions": False,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_time_scale_shift": "default",
    "transformer_layers_per_block": [1, 2, 10],
    "upcast_attention": None,
    "use_linear_projection": True,
}

# --- h94/IP-Adapter models/image_encoder: OpenCLIP ViT-H/14 --------------------------------------
IMAGE_ENCODER_VIT_H: dict[str, Any] = {
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "image_size": 224,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 5120,
    "layer_norm_eps": 1e-05,
    "num_attention_heads": 16,
    "num_channels": 3,
    "num_hidden_layers": 32,
    "patch_size": 14,
    "projection_dim": 1024,
}

# --- h94/IP-Adapter sdxl_models/ip-adapter-plus-face_sdxl_vit-h: the Resampler -------------------
# IP-Adapter's IPAdapterPlusXL: Resampler(dim=1280, depth=4, dim_head=64, heads=20, num_queries=16,
# embedding_dim=<image encoder hidden size>, output_dim=<UNet cross_attention_dim>, ff_mult=4).
PLUS_FACE_RESAMPLER: dict[str, int] = {
    "embed_dims": 1280,
    "output_dims": 2048,
    "hidden_dims": 1280,
    "depth": 4,
    "dim_head": 64,
    "heads": 20,
    "num_queries": 16,
    "ffn_ratio": 4,
}

# --- CompVis/stable-diffusion-safety-checker: CLIP ViT-L/14's vision tower + concept embeddings -----
SAFETY_CHECKER_VISION: dict[str, Any] = {
    "hidden_size": 1024,
    "image_size": 224,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "patch_size": 14,
}
SAFETY_CHECKER_PROJECTION_DIM = 768

PLUS_FACE_WEIGHT_NAME = "ip-adapter-plus-face_sdxl_vit-h.safetensors"
LORA_RANK = 64
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]

# Parameter counts of the published models, derived from the configs above on the meta device and
# checked by a test: a config that drifts from production changes one of these.
PARAMETER_COUNTS: dict[str, int] = {
    "unet": 2_567_463_684,
    "controlnet": 1_251_014_160,
    "vae": 83_653_863,
    "text_encoder": 123_060_480,
    "text_encoder_2": 694_659_840,
    "image_encoder": 632_076_800,
    # The Plus-face IP-Adapter: its Resampler and the image key/value projections it adds to the UNet.
    "image_projection": 82_961_664,
    "ip_adapter_layers": 340_787_200,
    "safety_checker": 303_981_588,
}


@dataclass(frozen=True)
class RandomModelSpec:
    """Every config of one random model; `FULL` is production's, tests shrink a copy of it."""

    unet: dict[str, Any] = field(default_factory=lambda: dict(SDXL_UNET))
    controlnet: dict[str, Any] = field(default_factory=lambda: dict(CONTROLNET_CANNY_SDXL))
    vae: dict[str, Any] = field(default_factory=lambda: dict(SDXL_VAE))
    text_encoder: dict[str, Any] = field(default_factory=lambda: dict(SDXL_TEXT_ENCODER))
    text_encoder_2: dict[str, Any] = field(default_factory=lambda: dict(SDXL_TEXT_ENCODER_2))
    image_encoder: dict[str, Any] = field(default_factory=lambda: dict(IMAGE_ENCODER_VIT_H))
    resampler: dict[str, int] = field(default_factory=lambda: dict(PLUS_FACE_RESAMPLER))
    safety_checker: dict[str, Any] = field(default_factory=lambda: dict(SAFETY_CHECKER_VISION))
    safety_projection_dim: int = SAFETY_CHECKER_PROJECTION_DIM
    lora_rank: int = LORA_RANK

    def with_changes(self, **changes: Any) -> RandomModelSpec:
        return replace(self, **changes)


FULL = RandomModelSpec()


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build straight in the target dtype: a 2.6 B-parameter UNet made in fp32 first needs 10 GB."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def clip_tokenizer(vocab_size: int = 49408) -> CLIPTokenizer:
    """A CLIP tokenizer with CLIP's vocabulary size and special-token ids, built offline.

    CLIP's own BPE merges live on the hub; a random model needs only that every id stays inside the
    embedding and that <|startoftext|>/<|endoftext|> are the ids the text encoders expect (49406,
    49407), and every prompt is padded to 77 tokens anyway, so the work per prompt is the same.
    Byte-level symbols cover every string; the rest of the vocabulary is unreachable filler.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = [chr(b) for b in printable] + [chr(256 + n) for n in range(256 - len(printable))]
    vocab: dict[str, int] = {}
    for sym in symbols:
        vocab[sym] = len(vocab)
    for sym in symbols:
        vocab[sym + "</w>"] = len(vocab)
    while len(vocab) < vocab_size - 2:
        vocab[f"<|unused{len(vocab)}|>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _unet(spec: RandomModelSpec) -> UNet2DConditionModel:
    return UNet2DConditionModel(**spec.unet)


def _controlnet(spec: RandomModelSpec) -> ControlNetModel:
    return ControlNetModel(**spec.controlnet)


def _vae(spec: RandomModelSpec) -> AutoencoderKL:
    return AutoencoderKL(**spec.vae)


def _text_encoders(spec: RandomModelSpec) -> tuple[CLIPTextModel, CLIPTextModelWithProjection]:
    return (
        CLIPTextModel(CLIPTextConfig(**spec.text_encoder)),
        CLIPTextModelWithProjection(CLIPTextConfig(**spec.text_encoder_2)),
    )


def _image_encoder(spec: RandomModelSpec) -> CLIPVisionModelWithProjection:
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**spec.image_encoder))


def _resampler(spec: RandomModelSpec) -> IPAdapterPlusImageProjection:
    return IPAdapterPlusImageProjection(**spec.resampler)


def _safety_checker(spec: RandomModelSpec) -> StableDiffusionSafetyChecker:
    # The text tower is never built by the checker, but CLIPConfig always describes one.
    text = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    config = CLIPConfig(text_config=text, vision_config=spec.safety_checker, projection_dim=spec.safety_projection_dim)
    model = StableDiffusionSafetyChecker(config)
    with torch.no_grad():
        # Thresholds no cosine similarity reaches: random concepts must not filter the benchmark's images.
        model.concept_embeds_weights.fill_(1.0)
        model.special_care_embeds_weights.fill_(1.0)
    return model


def safety_image_processor(spec: RandomModelSpec = FULL) -> CLIPImageProcessor:
    side = spec.safety_checker["image_size"]
    return CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})


def component_builders(spec: RandomModelSpec = FULL) -> dict[str, Any]:
    """Name -> zero-argument builder, for counting parameters on the meta device."""
    encoders = lambda: _text_encoders(spec)  # noqa: E731
    return {
        "unet": lambda: _unet(spec),
        "controlnet": lambda: _controlnet(spec),
        "vae": lambda: _vae(spec),
        "text_encoder": lambda: encoders()[0],
        "text_encoder_2": lambda: encoders()[1],
        "image_encoder": lambda: _image_encoder(spec),
        "image_projection": lambda: _resampler(spec),
        "safety_checker": lambda: _safety_checker(spec),
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
            counts["ip_adapter_layers"] = sum(2 * cross_dim * h for h in _cross_attention_hidden_sizes(module))
    return counts


def plus_ip_adapter_state_dict(
    unet: UNet2DConditionModel, spec: RandomModelSpec = FULL
) -> dict[str, torch.Tensor]:
    """Random Plus IP-Adapter weights in the original checkpoint's flat layout.

    `image_proj.*` is the Resampler under IP-Adapter's own names (what `load_ip_adapter` converts
    from), `ip_adapter.N.to_k_ip/to_v_ip` the image key/value projections of every cross-attention,
    numbered 1, 3, 5, ... in processor order as the original checkpoints are.
    """
    dtype = unet.dtype
    device = unet.device
    with torch.device(device), _default_dtype(dtype):
        resampler = _resampler(spec)
    original = resampler_to_original(resampler.state_dict())
    tensors = {f"image_proj.{name}": value for name, value in original.items()}
    cross_dim = spec.resampler["output_dims"]
    hidden_sizes = _cross_attention_hidden_sizes(unet)
    with torch.device(device), _default_dtype(dtype):
        for slot, hidden in zip(range(1, 2 * len(hidden_sizes), 2), hidden_sizes, strict=True):
            for name in ("to_k_ip", "to_v_ip"):
                tensors[f"ip_adapter.{slot}.{name}.weight"] = torch.nn.Linear(cross_dim, hidden, bias=False).weight.data
    return {k: v.contiguous() for k, v in tensors.items()}


def _cross_attention_hidden_sizes(unet: UNet2DConditionModel) -> list[int]:
    channels = list(unet.config.block_out_channels)
    sizes = []
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            sizes.append(channels[-1])
        elif name.startswith("up_blocks"):
            sizes.append(list(reversed(channels))[int(name.split(".")[1])])
        else:
            sizes.append(channels[int(name.split(".")[1])])
    return sizes


def random_lora_state_dict(
    unet: UNet2DConditionModel, *, rank: int = LORA_RANK, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A random UNet LoRA on every attention projection, in the PEFT layout `load_lora_weights` reads.

    Built from the module shapes directly, without attaching an adapter to a 2.6 B-parameter UNet.
    B is small but not zero, so the style visibly changes the picture, as a trained one does.
    """
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in unet.named_modules():
        if not isinstance(module, torch.nn.Linear) or ".attn" not in name:
            continue
        if not any(name.endswith(f".{target}") for target in LORA_TARGETS):
            continue
        down = torch.randn(rank, module.in_features, generator=generator) / module.in_features**0.5
        up = torch.randn(module.out_features, rank, generator=generator) * (0.2 / rank**0.5)
        tensors[f"unet.{name}.lora_A.weight"] = down.to(unet.dtype)
        tensors[f"unet.{name}.lora_B.weight"] = up.to(unet.dtype)
    return tensors


def random_components(
    spec: RandomModelSpec = FULL, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
) -> dict[str, Any]:
    """Every model of the pipeline with random weights, made directly on `device` in `dtype`."""
    torch.manual_seed(seed)
    with torch.device(device), _default_dtype(dtype):
        text_encoder, text_encoder_2 = _text_encoders(spec)
        components = {
            "unet": _unet(spec),
            "controlnet": _controlnet(spec),
            "vae": _vae(spec),
            "text_encoder": text_encoder,
            "text_encoder_2": text_encoder_2,
            "image_encoder": _image_encoder(spec),
        }
    vocab_size = spec.text_encoder["vocab_size"]
    components["tokenizer"] = clip_tokenizer(vocab_size)
    components["tokenizer_2"] = clip_tokenizer(vocab_size)
    components["scheduler"] = EulerDiscreteScheduler.from_config(SDXL_SCHEDULER)
    return components


def _nest_ip_adapter(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The two-part dict `load_ip_adapter` takes, from the flat `image_proj.* / ip_adapter.*` file layout."""
    nested: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    for key, value in flat.items():
        part, rest = key.split(".", 1)
        nested[part][rest] = value
    return nested


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
        _nest_ip_adapter(plus_ip_adapter_state_dict(pipe.unet, spec)),
        subfolder=None,
        weight_name=None,
        image_encoder_folder=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_random_safety_checker(
    spec: RandomModelSpec = FULL, *, device: torch.device | str = "cuda", dtype: torch.dtype = torch.bfloat16,
) -> SafetyChecker:
    """The image safety check at production size, in memory (it never flags: see `_safety_checker`)."""
    from mmpp.inference.safety import SafetyChecker

    with torch.device(device), _default_dtype(dtype):
        model = _safety_checker(spec)
    return SafetyChecker(model, safety_image_processor(spec), source="random")


def write_lora_file(path: Path, unet: UNet2DConditionModel, *, rank: int = LORA_RANK, seed: int = 0) -> Path:
    """A random LoRA as a safetensors file (a style's, or a stand-in for a few-step LCM/Lightning one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    layers = random_lora_state_dict(unet, rank=rank, seed=seed)
    save_file({k: v.contiguous().cpu() for k, v in layers.items()}, str(path))
    return path


def write_lora_style(
    model_dir: Path, name: str, unet: UNet2DConditionModel, *, rank: int = LORA_RANK, seed: int = 1,
    **overrides: Any,
) -> Path:
    """One style folder (`style.json` + a random LoRA of `rank`) under `model_dir/styles/`."""
    from mmpp.inference.style_definition import LoraSource, StyleDefinition
    from mmpp.inference.style_folder import write_style

    folder = Path(model_dir) / "styles" / name
    write_lora_file(folder / "lora.safetensors", unet, rank=rank, seed=seed)
    fields: dict[str, Any] = {
        "name": name,
        "description": f"Random weights, rank-{rank} LoRA ({name}); for benchmarks.",
        "trigger_words": [f"{name.replace('-', '')} style"],
        "lora": LoraSource(source="lora.safetensors", scale=1.0),
        "steps": 30,
        "guidance": 6.0,
        "scheduler": "euler",
    }
    fields.update(overrides)
    write_style(folder, StyleDefinition.model_validate(fields))
    return folder


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
    with _default_dtype(dtype):
        _safety_checker(spec).save_pretrained(model_dir / "safety-checker", safe_serialization=True)
    safety_image_processor(spec).save_pretrained(model_dir / "safety-checker")
    report("safety-checker")
    write_lora_style(model_dir, "random-style", sdxl.unet, rank=spec.lora_rank, seed=seed + 1)
    report("styles")
    return model_dir

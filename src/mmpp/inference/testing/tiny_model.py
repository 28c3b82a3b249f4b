"""A tiny random-weight SDXL, VAE, ControlNet, IP-Adapter and style LoRA, in the production layouts.

Nothing here reaches the hub: the tokenizers are built from a byte-level vocabulary written in code.
The result loads through exactly the same `from_pretrained` / `load_ip_adapter` /
`load_lora_weights` calls as the production models; its images are noise, its code paths are real.

Layout (what `ModelSources.from_model_dir` expects), each part standing for one production source:
    DIR/sdxl/         stabilityai/stable-diffusion-xl-base-1.0   (StableDiffusionXLPipeline.save_pretrained)
    DIR/vae/          madebyollin/sdxl-vae-fp16-fix              (the VAE= override; its own random weights)
    DIR/controlnet/   diffusers/controlnet-canny-sdxl-1.0
    DIR/ip-adapter/   h94/IP-Adapter: sdxl_models/ip-adapter-plus-face_sdxl_vit-tiny.safetensors (the Plus
                      Resampler, fed with the encoder's penultimate hidden states) or, with `--ip-adapter
                      plain`, sdxl_models/ip-adapter_sdxl_vit-tiny.safetensors; models/image_encoder/
    DIR/styles/tiny-style/style.json + lora.safetensors

Every size that makes the model tiny is in the configs just below, so a full-size builder can mirror
them with the production numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    EulerDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
from diffusers.models.embeddings import ImageProjection, IPAdapterPlusImageProjection
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from PIL import Image
from safetensors.torch import save_file
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from mmpp.inference.style_definition import LoraSource, StyleDefinition
from mmpp.inference.style_folder import write_style
from mmpp.inference.testing.ip_adapter_layout import resampler_to_original
from mmpp.inference.testing.tiny_safety import write_tiny_safety_checker

# --- the configs: production numbers in the comments ----------------------------------------------
TEXT_DIM = 32  # SDXL: 768 (CLIP ViT-L) and 1280 (OpenCLIP ViT-bigG)
CROSS_ATTENTION_DIM = 2 * TEXT_DIM  # SDXL concatenates both text encoders' hidden states: 2048
TIME_EMBED_DIM = 8  # SDXL: 256
IMAGE_EMBED_DIM = 32  # the image encoder's projection; ViT-H: 1024
IP_TOKENS = 4  # the plain IP-Adapter's image tokens, as in production
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]

UNET_CONFIG: dict[str, object] = {  # SDXL: (320, 640, 1280), 2 layers, transformer depth (1, 2, 10)
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": (2, 4),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": TIME_EMBED_DIM,
    "transformer_layers_per_block": (1, 1),
    "projection_class_embeddings_input_dim": 6 * TIME_EMBED_DIM + TEXT_DIM,
    "cross_attention_dim": CROSS_ATTENTION_DIM,
    "norm_num_groups": 8,
}
VAE_CONFIG: dict[str, object] = {  # SDXL: (128, 256, 512, 512), 32 groups
    "block_out_channels": [16, 32],
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 0.13025,
}
# The separate VAE folder stands for madebyollin/sdxl-vae-fp16-fix, whose config says it is safe in fp16.
VAE_OVERRIDE_CONFIG: dict[str, object] = {**VAE_CONFIG, "force_upcast": False}
# One entry per VAE block, as the ControlNet's conditioning embedding needs; SDXL: (16, 32, 96, 256).
CONTROLNET_CONDITIONING_CHANNELS = (16, 32)
TEXT_ENCODER_CONFIG: dict[str, object] = {  # SDXL: 768/12 layers and 1280/32 layers
    "hidden_size": TEXT_DIM,
    "intermediate_size": 37,
    "layer_norm_eps": 1e-05,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "hidden_act": "gelu",
    "projection_dim": TEXT_DIM,
    "max_position_embeddings": 77,
}
IMAGE_ENCODER_CONFIG: dict[str, object] = {  # ViT-H/14: hidden 1280, 32 layers, 16 heads, 224 px, patch 14
    "hidden_size": 32,
    "projection_dim": IMAGE_EMBED_DIM,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "image_size": 32,
    "patch_size": 4,
}
# The Plus Resampler. diffusers infers heads from `to_q` rows / 64 and always builds depth 4, so those
# two are fixed; plus-face SDXL: hidden 1280, 20 heads, 16 queries, output 2048.
IP_ADAPTER_PLUS_CONFIG: dict[str, int] = {
    "hidden_dims": 32,
    "heads": 1,
    "dim_head": 64,
    "num_queries": 16,
    "depth": 4,
    "ffn_ratio": 4,
}
IpAdapterKind = Literal["plus", "plain"]
# File names follow h94/IP-Adapter's pattern, with the encoder's name ("vit-h") made "vit-tiny".
IP_ADAPTER_WEIGHT_NAMES: dict[str, str] = {
    "plus": "ip-adapter-plus-face_sdxl_vit-tiny.safetensors",
    "plain": "ip-adapter_sdxl_vit-tiny.safetensors",
}


def _byte_vocab() -> dict[str, int]:
    """CLIP's byte-level alphabet, each symbol alone and as a word end: every string tokenizes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = [chr(b) for b in printable]
    symbols += [chr(256 + n) for n in range(256 - len(printable))]
    vocab = {"<|startoftext|>": 0}
    for sym in symbols:
        vocab[sym] = len(vocab)
    for sym in symbols:
        vocab[sym + "</w>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def tiny_tokenizer() -> CLIPTokenizer:
    return CLIPTokenizer(vocab=_byte_vocab(), merges=[], model_max_length=77)


def _text_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        vocab_size=len(tokenizer),
        **TEXT_ENCODER_CONFIG,
    )


def tiny_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(**UNET_CONFIG)


def tiny_vae(config: dict[str, object] = VAE_CONFIG) -> AutoencoderKL:
    return AutoencoderKL(**config)


def tiny_scheduler() -> EulerDiscreteScheduler:
    # SDXL base's own scheduler settings.
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )


def tiny_pipeline() -> StableDiffusionXLPipeline:
    tokenizer = tiny_tokenizer()
    config = _text_config(tokenizer)
    return StableDiffusionXLPipeline(
        vae=tiny_vae(),
        text_encoder=CLIPTextModel(config),
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer,
        tokenizer_2=tiny_tokenizer(),
        unet=tiny_unet(),
        scheduler=tiny_scheduler(),
        add_watermarker=False,
    )


def _ip_attention_weights(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """`ip_adapter.N.to_k_ip/to_v_ip` for every cross-attention layer, as both IP-Adapter kinds have them.

    Keys follow diffusers' reading of the original numbering: cross-attention processors, in
    order, take the odd slots 1, 3, 5, ...
    """
    tensors: dict[str, torch.Tensor] = {}
    block_channels = unet.config.block_out_channels
    cross_attention = [name for name in unet.attn_processors if not name.endswith("attn1.processor")]
    for slot, name in zip(range(1, 2 * len(cross_attention), 2), cross_attention, strict=True):
        if name.startswith("mid_block"):
            hidden = block_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(block_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = block_channels[int(name[len("down_blocks.")])]
        proc = IPAdapterAttnProcessor2_0(hidden_size=hidden, cross_attention_dim=CROSS_ATTENTION_DIM).state_dict()
        tensors[f"ip_adapter.{slot}.to_k_ip.weight"] = proc["to_k_ip.0.weight"]
        tensors[f"ip_adapter.{slot}.to_v_ip.weight"] = proc["to_v_ip.0.weight"]
    return tensors


def ip_adapter_state_dict(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """Random plain IP-Adapter weights in the flat `image_proj.* / ip_adapter.*` safetensors layout."""
    tensors = _ip_attention_weights(unet)
    projection = ImageProjection(
        cross_attention_dim=CROSS_ATTENTION_DIM, image_embed_dim=IMAGE_EMBED_DIM, num_image_text_embeds=IP_TOKENS
    ).state_dict()
    tensors["image_proj.proj.weight"] = projection["image_embeds.weight"]
    tensors["image_proj.proj.bias"] = projection["image_embeds.bias"]
    tensors["image_proj.norm.weight"] = projection["norm.weight"]
    tensors["image_proj.norm.bias"] = projection["norm.bias"]
    return {k: v.contiguous() for k, v in tensors.items()}


def ip_adapter_plus_state_dict(
    unet: UNet2DConditionModel, image_encoder: CLIPVisionModelWithProjection
) -> dict[str, torch.Tensor]:
    """Random Plus(-face) IP-Adapter weights in the published file layout: `image_proj.latents`,
    `proj_in`, `proj_out`, `norm_out`, `layers.N.0.{norm1,norm2,to_q,to_kv,to_out}`, `layers.N.1.{0,1,3}`,
    and the same `ip_adapter.N.to_k_ip/to_v_ip` as the plain kind. The Resampler reads the encoder's
    penultimate hidden states, so its input width is the encoder's hidden size."""
    config = IP_ADAPTER_PLUS_CONFIG
    resampler = IPAdapterPlusImageProjection(
        embed_dims=image_encoder.config.hidden_size,
        output_dims=CROSS_ATTENTION_DIM,
        hidden_dims=config["hidden_dims"],
        depth=config["depth"],
        dim_head=config["dim_head"],
        heads=config["heads"],
        num_queries=config["num_queries"],
        ffn_ratio=config["ffn_ratio"],
    ).state_dict()
    projection = resampler_to_original(resampler)
    tensors = _ip_attention_weights(unet)
    tensors.update({f"image_proj.{name}": value for name, value in projection.items()})
    return {k: v.contiguous() for k, v in tensors.items()}


def tiny_image_encoder() -> CLIPVisionModelWithProjection:
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**IMAGE_ENCODER_CONFIG))


def write_random_lora(unet: UNet2DConditionModel, path: Path, *, rank: int = 4, seed: int = 0) -> Path:
    """Save a random (non-zero) UNet LoRA in the diffusers safetensors layout."""
    from diffusers.utils import convert_state_dict_to_diffusers

    torch.manual_seed(seed)
    adapter = f"random_{seed}"
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS, init_lora_weights=False),
        adapter_name=adapter,
    )
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, adapter_name=adapter))
    unet.delete_adapters(adapter)
    path.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionXLPipeline.save_lora_weights(
        save_directory=str(path.parent), unet_lora_layers=layers, weight_name=path.name
    )
    return path


def pickled_copy(weights: Path, target: Path) -> Path:
    """`weights` (a .safetensors file) saved again as a pickled torch `.bin` at `target`: what a
    stranger's style folder may hold, for the tests that show no such file is ever loaded."""
    from safetensors.torch import load_file

    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(load_file(weights), target)
    return target


def add_tiny_style(
    model_dir: Path, name: str, *, seed: int, unet: UNet2DConditionModel | None = None, **overrides: object
) -> Path:
    """Write one more style with its own random LoRA into `model_dir/styles/` (tests use several)."""
    if unet is None:
        unet = UNet2DConditionModel.from_pretrained(model_dir / "sdxl" / "unet")
    folder = model_dir / "styles" / name
    write_random_lora(unet, folder / "lora.safetensors", seed=seed)
    # Noise, like everything this model draws, but a real PNG for `/style list` to show.
    noise = torch.randint(0, 256, (64, 64, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    Image.fromarray(noise.numpy()).save(folder / "sample.png")
    fields: dict[str, object] = {
        "name": name,
        "sample_image": "sample.png",
        "description": f"Random weights ({name}); for tests and smoke runs.",
        "trigger_words": [f"{name.replace('-', '')} style"],
        "lora": LoraSource(source="lora.safetensors", scale=1.0),
        "steps": 4,
        "guidance": 5.0,
    }
    fields.update(overrides)
    write_style(folder, StyleDefinition.model_validate(fields))
    return folder


def make_tiny_model(model_dir: Path, *, seed: int = 0, ip_adapter: IpAdapterKind = "plus") -> Path:
    """Write the whole tiny model tree into `model_dir` (created if needed); takes seconds on a CPU.

    `ip_adapter` picks the IP-Adapter kind: "plus" (the Plus-face Resampler production loads) or "plain".
    """
    from mmpp.inference.loader import quiet_libraries

    quiet_libraries()
    torch.manual_seed(seed)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    pipe = tiny_pipeline()
    # The ControlNet copies the UNet's encoder, so it must be made before any LoRA touches the UNet.
    controlnet = ControlNetModel.from_unet(
        pipe.unet, conditioning_embedding_out_channels=CONTROLNET_CONDITIONING_CHANNELS
    )
    pipe.save_pretrained(model_dir / "sdxl", safe_serialization=True)
    controlnet.save_pretrained(model_dir / "controlnet", safe_serialization=True)
    # Its own random weights, so a picture shows whether the VAE= override or the base's VAE decoded it.
    tiny_vae(VAE_OVERRIDE_CONFIG).save_pretrained(model_dir / "vae", safe_serialization=True)

    ip_dir = model_dir / "ip-adapter"
    encoder = tiny_image_encoder()
    encoder.save_pretrained(ip_dir / "models" / "image_encoder", safe_serialization=True)
    weights = (
        ip_adapter_plus_state_dict(pipe.unet, encoder) if ip_adapter == "plus" else ip_adapter_state_dict(pipe.unet)
    )
    (ip_dir / "sdxl_models").mkdir(parents=True, exist_ok=True)
    save_file(weights, str(ip_dir / "sdxl_models" / IP_ADAPTER_WEIGHT_NAMES[ip_adapter]))

    add_tiny_style(model_dir, "tiny-style", seed=seed + 1, unet=pipe.unet)
    write_tiny_safety_checker(model_dir / "safety-checker", seed=seed)
    return model_dir

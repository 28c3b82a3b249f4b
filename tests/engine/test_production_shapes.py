"""The tiny model has the production model set's shapes: the Plus-face IP-Adapter (and the plain one),
a separate VAE behind `VAE=`, and files whose key names follow the published production files.

The key patterns below are written down from diffusers' conversion code
(`UNet2DConditionLoadersMixin._convert_ip_adapter_image_proj_to_diffusers` and
`_convert_ip_adapter_attn_to_diffusers`) and the layouts of the files production loads, so a drift
between the tiny model and production fails here.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.models.embeddings import ImageProjection, IPAdapterPlusImageProjection
from safetensors import safe_open

from mmpp.cli import main
from mmpp.inference.engine import Engine, GenerationRequest
from mmpp.model_sources import ModelSources
from mmpp.settings import load_settings

# --- production patterns ---------------------------------------------------------------------------
# h94/IP-Adapter sdxl_models/ip-adapter-plus-face_sdxl_vit-h.safetensors: a Resampler (depth 4, heads of
# 64 channels: diffusers reads heads as to_q rows / 64) plus one to_k_ip/to_v_ip pair per cross-attention.
PLUS_PROJECTION = [
    r"image_proj\.latents",
    r"image_proj\.proj_in\.(weight|bias)",
    r"image_proj\.proj_out\.(weight|bias)",
    r"image_proj\.norm_out\.(weight|bias)",
    r"image_proj\.layers\.[0-3]\.0\.norm[12]\.(weight|bias)",
    r"image_proj\.layers\.[0-3]\.0\.(to_q|to_kv|to_out)\.weight",
    r"image_proj\.layers\.[0-3]\.1\.0\.(weight|bias)",
    r"image_proj\.layers\.[0-3]\.1\.[13]\.weight",
]
# h94/IP-Adapter sdxl_models/ip-adapter_sdxl_vit-h.safetensors: a linear projection and a LayerNorm.
PLAIN_PROJECTION = [r"image_proj\.proj\.(weight|bias)", r"image_proj\.norm\.(weight|bias)"]
IP_ATTENTION = r"ip_adapter\.(\d+)\.to_[kv]_ip\.weight"
# A style LoRA as `mmpp train` / diffusers' DreamBooth-LoRA scripts write it (`lora.down/up`), or in the
# PEFT spelling (`lora_A/B`) that `mmpp style import` and newer tools write: UNet attention projections.
LORA_KEY = (
    r"unet\.(down_blocks|mid_block|up_blocks)\.[\w.]+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)\."
    r"(lora\.down|lora\.up|lora_A|lora_B)\.weight"
)
# madebyollin/sdxl-vae-fp16-fix config.json
VAE_KEYS = {"_class_name", "act_fn", "block_out_channels", "down_block_types", "force_upcast", "in_channels",
            "latent_channels", "layers_per_block", "norm_num_groups", "out_channels", "sample_size",
            "scaling_factor", "up_block_types"}
# diffusers/controlnet-canny-sdxl-1.0 config.json
CONTROLNET_KEYS = {"_class_name", "act_fn", "addition_embed_type", "addition_embed_type_num_heads",
                   "addition_time_embed_dim", "attention_head_dim", "block_out_channels", "class_embed_type",
                   "conditioning_channels", "conditioning_embedding_out_channels",
                   "controlnet_conditioning_channel_order", "cross_attention_dim", "down_block_types",
                   "downsample_padding", "encoder_hid_dim", "encoder_hid_dim_type", "flip_sin_to_cos",
                   "freq_shift", "global_pool_conditions", "in_channels", "layers_per_block",
                   "mid_block_scale_factor", "norm_eps", "norm_num_groups", "num_attention_heads",
                   "num_class_embeds", "only_cross_attention", "projection_class_embeddings_input_dim",
                   "resnet_time_scale_shift", "transformer_layers_per_block", "upcast_attention",
                   "use_linear_projection"}
# h94/IP-Adapter models/image_encoder/config.json (ViT-H/14)
IMAGE_ENCODER_KEYS = {"architectures", "hidden_size", "image_size", "intermediate_size", "num_attention_heads",
                      "num_hidden_layers", "patch_size", "projection_dim"}


def tensors(path: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(str(path), "pt") as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}


def config(path: Path) -> dict[str, object]:
    return json.loads(path.read_text())


def full(pattern: str, key: str) -> re.Match[str] | None:
    return re.fullmatch(pattern, key)


@pytest.fixture(scope="module")
def plain_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Made the way a user asks for it: `mmpp make-tiny-model DIR --ip-adapter plain`."""
    model_dir = tmp_path_factory.mktemp("tiny-plain")
    assert main(["make-tiny-model", str(model_dir), "--ip-adapter", "plain"]) == 0
    assert not list((model_dir / "ip-adapter" / "sdxl_models").glob("ip-adapter-plus*"))
    return model_dir


def _ip_weights(model_dir: Path, name: str) -> dict[str, tuple[int, ...]]:
    return tensors(model_dir / "ip-adapter" / "sdxl_models" / name)


def _check_ip_attention(shapes: dict[str, tuple[int, ...]], model_dir: Path) -> None:
    unet = config(model_dir / "sdxl" / "unet" / "config.json")
    slots = sorted({int(m.group(1)) for k in shapes if (m := full(IP_ATTENTION, k))})
    # One pair per cross-attention processor, numbered 1, 3, 5, ... as the original checkpoints are.
    assert slots == list(range(1, 2 * len(slots), 2)) and slots
    assert all(shapes[f"ip_adapter.{s}.to_k_ip.weight"][1] == unet["cross_attention_dim"] for s in slots)


def test_the_plus_ip_adapter_has_the_production_key_layout(tiny_model_dir: Path) -> None:
    # The default tiny model is the Plus kind, so every test that generates on it runs what production runs.
    sources = ModelSources.from_model_dir(tiny_model_dir)
    assert (sources.ip_adapter_subfolder, sources.image_encoder_subfolder) == ("sdxl_models", "models/image_encoder")
    assert sources.ip_adapter_weight_name == "ip-adapter-plus-face_sdxl_vit-tiny.safetensors"
    shapes = _ip_weights(tiny_model_dir, "ip-adapter-plus-face_sdxl_vit-tiny.safetensors")
    projection = [k for k in shapes if k.startswith("image_proj.")]
    assert all(any(full(p, k) for p in PLUS_PROJECTION) for k in projection), "a key production lacks"
    assert all(any(full(p, k) for k in projection) for p in PLUS_PROJECTION), "a production key missing"
    assert all(k.startswith("image_proj.") or full(IP_ATTENTION, k) for k in shapes)
    _check_ip_attention(shapes, tiny_model_dir)
    # The shapes diffusers infers the Resampler from.
    encoder = config(tiny_model_dir / "ip-adapter" / "models" / "image_encoder" / "config.json")
    unet = config(tiny_model_dir / "sdxl" / "unet" / "config.json")
    _, queries, hidden = shapes["image_proj.latents"]
    assert queries == 16  # plus-face SDXL's token count
    assert shapes["image_proj.proj_in.weight"] == (hidden, encoder["hidden_size"])  # penultimate hidden states
    assert shapes["image_proj.proj_out.weight"] == (unet["cross_attention_dim"], hidden)
    to_q = shapes["image_proj.layers.0.0.to_q.weight"]
    assert to_q[0] % 64 == 0 and shapes["image_proj.layers.0.0.to_kv.weight"] == (2 * to_q[0], hidden)
    assert {k.split(".")[2] for k in projection if k.startswith("image_proj.layers.")} == {"0", "1", "2", "3"}


def test_the_plain_ip_adapter_has_the_production_key_layout(plain_model_dir: Path) -> None:
    shapes = _ip_weights(plain_model_dir, "ip-adapter_sdxl_vit-tiny.safetensors")
    projection = {k for k in shapes if k.startswith("image_proj.")}
    assert projection == {"image_proj.proj.weight", "image_proj.proj.bias", "image_proj.norm.weight",
                          "image_proj.norm.bias"}
    assert all(any(full(p, k) for p in PLAIN_PROJECTION) for k in projection)
    _check_ip_attention(shapes, plain_model_dir)


def test_lora_vae_controlnet_and_encoder_follow_the_production_files(tiny_model_dir: Path) -> None:
    lora = tensors(tiny_model_dir / "styles" / "tiny-style" / "lora.safetensors")
    assert lora and all(full(LORA_KEY, k) for k in lora), [k for k in lora if not full(LORA_KEY, k)][:3]

    vae = config(tiny_model_dir / "vae" / "config.json")
    assert VAE_KEYS <= vae.keys() and vae["_class_name"] == "AutoencoderKL"
    assert vae["force_upcast"] is False and vae["scaling_factor"] == 0.13025  # as the fp16-fix VAE says
    assert (tiny_model_dir / "vae" / "diffusion_pytorch_model.safetensors").is_file()

    controlnet = config(tiny_model_dir / "controlnet" / "config.json")
    assert CONTROLNET_KEYS <= controlnet.keys() and controlnet["_class_name"] == "ControlNetModel"
    assert controlnet["addition_embed_type"] == "text_time" and controlnet["use_linear_projection"] is True
    assert controlnet["controlnet_conditioning_channel_order"] == "rgb" and controlnet["conditioning_channels"] == 3
    assert (tiny_model_dir / "controlnet" / "diffusion_pytorch_model.safetensors").is_file()

    encoder_dir = tiny_model_dir / "ip-adapter" / "models" / "image_encoder"
    encoder = config(encoder_dir / "config.json")
    assert IMAGE_ENCODER_KEYS <= encoder.keys() and encoder["architectures"] == ["CLIPVisionModelWithProjection"]
    assert (encoder_dir / "model.safetensors").is_file()
    # Only safetensors anywhere: production refuses pickled weights.
    assert not [p for p in tiny_model_dir.rglob("*") if p.suffix in (".bin", ".pt", ".ckpt", ".pth")]


def test_the_plus_projection_reads_the_encoders_penultimate_hidden_states(
    engine: Engine, selfie_bytes: bytes
) -> None:
    assert isinstance(engine.pipe.unet.encoder_hid_proj.image_projection_layers[0], IPAdapterPlusImageProjection)
    calls: list[bool] = []
    hook = engine.pipe.image_encoder.register_forward_hook(
        lambda module, args, kwargs, output: calls.append(bool(kwargs.get("output_hidden_states"))),
        with_kwargs=True,
    )
    try:
        result = engine.generate([GenerationRequest(face=engine.prepare(selfie_bytes), style="tiny-style", seed=2,
                                                    steps=2)])[0]
    finally:
        hook.remove()
    assert result.image is not None and calls and all(calls)


def test_the_plain_layout_generates_through_the_same_engine(plain_model_dir: Path, selfie_bytes: bytes) -> None:
    engine = Engine.from_settings(load_settings(None, model_dir=plain_model_dir, device="cpu", dtype="float32"))
    assert type(engine.pipe.unet.encoder_hid_proj.image_projection_layers[0]) is ImageProjection
    face = engine.prepare(selfie_bytes)
    first = engine.generate([GenerationRequest(face=face, style="tiny-style", seed=3, steps=2)])[0]
    again = engine.generate([GenerationRequest(face=face, style="tiny-style", seed=3, steps=2)])[0]
    assert first.image is not None and first.image.size == (engine.resolution, engine.resolution)
    assert first.png() == again.png()


def test_a_face_in_a_batch_reaches_only_its_own_portrait(
    engine: Engine, selfie_bytes: bytes, astronaut: object
) -> None:
    """diffusers' own batching gives every prompt every IP-Adapter image; each member must get only theirs."""
    from PIL import Image

    from tests.conftest import encode

    assert isinstance(astronaut, Image.Image)
    other = engine.prepare(encode(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    mine = engine.prepare(selfie_bytes)
    alone = engine.generate([GenerationRequest(face=mine, style="tiny-style", seed=5, steps=3)])[0]
    with_twin = engine.generate([GenerationRequest(face=mine, style="tiny-style", seed=5, steps=3),
                                 GenerationRequest(face=mine, style="tiny-style", seed=6, steps=3)])[0]
    with_other = engine.generate([GenerationRequest(face=mine, style="tiny-style", seed=5, steps=3),
                                  GenerationRequest(face=other, style="tiny-style", seed=6, steps=3)])[0]
    # The batch mate's face changes nothing in my portrait; batching itself may round differently.
    assert with_other.png() == with_twin.png()
    difference = np.abs(np.asarray(alone.image, np.int16) - np.asarray(with_other.image, np.int16))
    assert difference.max() <= 3


def test_the_vae_override_decodes_and_vae_none_uses_the_base_vae(
    tiny_model_dir: Path, tmp_path: Path, selfie_bytes: bytes
) -> None:
    with_override = Engine.from_settings(load_settings(None, model_dir=tiny_model_dir, device="cpu",
                                                       dtype="float32"))
    own = Engine.from_settings(load_settings(None, model_dir=tiny_model_dir, device="cpu", dtype="float32",
                                             vae="none"))
    assert with_override.pipe.vae.config.force_upcast is False  # the fp16-fix VAE's own config
    assert own.pipe.vae.config.force_upcast is True
    face = with_override.prepare(selfie_bytes)
    a = with_override.generate([GenerationRequest(face=face, style="tiny-style", seed=9, steps=2)])[0]
    b = own.generate([GenerationRequest(face=face, style="tiny-style", seed=9, steps=2)])[0]
    assert np.abs(np.asarray(a.image, np.int16) - np.asarray(b.image, np.int16)).mean() > 5
    # Without the folder, VAE= points at nothing and the start says so.
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(Exception, match="vae"):
        Engine.from_settings(load_settings(None, model_dir=broken, device="cpu", dtype="float32"))


def test_pickled_ip_adapter_weights_are_refused_in_one_line(tiny_model_dir: Path) -> None:
    from mmpp.inference.loader import ModelUnavailable, load_pipeline

    sources = ModelSources.from_model_dir(tiny_model_dir)
    pickled = ModelSources(**{**sources.__dict__, "ip_adapter_weight_name": "ip-adapter-plus-face_sdxl_vit-h.bin"})
    with pytest.raises(ModelUnavailable, match=r"IP_ADAPTER_WEIGHT_NAME=.*\.bin is not a \.safetensors file"):
        load_pipeline(pickled, torch.device("cpu"), torch.float32)

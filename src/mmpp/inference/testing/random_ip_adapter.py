"""The Plus-face IP-Adapter with random weights: the ViT-H image encoder, the Resampler, and the image
key/value projections it adds to every cross-attention of the UNet."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.embeddings import IPAdapterPlusImageProjection
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from mmpp.inference.testing.ip_adapter_layout import resampler_to_original
from mmpp.inference.testing.random_spec import FULL, RandomModelSpec, default_dtype


def build_image_encoder(spec: RandomModelSpec) -> CLIPVisionModelWithProjection:
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**spec.image_encoder))


def build_resampler(spec: RandomModelSpec) -> IPAdapterPlusImageProjection:
    return IPAdapterPlusImageProjection(**spec.resampler)


def cross_attention_hidden_sizes(unet: UNet2DConditionModel) -> list[int]:
    """The hidden size of each cross-attention, in processor order: one image key/value pair each."""
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
    with torch.device(device), default_dtype(dtype):
        resampler = build_resampler(spec)
    original = resampler_to_original(resampler.state_dict())
    tensors = {f"image_proj.{name}": value for name, value in original.items()}
    cross_dim = spec.resampler["output_dims"]
    hidden_sizes = cross_attention_hidden_sizes(unet)
    with torch.device(device), default_dtype(dtype):
        for slot, hidden in zip(range(1, 2 * len(hidden_sizes), 2), hidden_sizes, strict=True):
            for name in ("to_k_ip", "to_v_ip"):
                tensors[f"ip_adapter.{slot}.{name}.weight"] = torch.nn.Linear(cross_dim, hidden, bias=False).weight.data
    return {k: v.contiguous() for k, v in tensors.items()}


def nest_ip_adapter(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The two-part dict `load_ip_adapter` takes, from the flat `image_proj.* / ip_adapter.*` file layout."""
    nested: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    for key, value in flat.items():
        part, rest = key.split(".", 1)
        nested[part][rest] = value
    return nested

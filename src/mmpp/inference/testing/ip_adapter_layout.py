"""The published IP-Adapter Plus files' names for diffusers' Resampler, for both model builders.

diffusers loads a Plus file by renaming its `image_proj.*` keys (`_convert_ip_adapter_image_proj_to_diffusers`);
the builders draw a diffusers `IPAdapterPlusImageProjection` and write it back under the published names, so
the production loader's own conversion runs on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import torch

# Inside `layers.N.`: diffusers' name -> the published one. `attn.to_k` and `attn.to_v` are one
# projection there, `to_kv` (key rows first); `resampler_to_original` joins them.
RESAMPLER_RENAMES: Final = {
    "ln0.weight": "0.norm1.weight",
    "ln0.bias": "0.norm1.bias",
    "ln1.weight": "0.norm2.weight",
    "ln1.bias": "0.norm2.bias",
    "attn.to_q.weight": "0.to_q.weight",
    "attn.to_k.weight": "0.to_kv.weight",
    "attn.to_out.0.weight": "0.to_out.weight",
    "ff.0.weight": "1.0.weight",
    "ff.0.bias": "1.0.bias",
    "ff.1.net.0.proj.weight": "1.1.weight",
    "ff.1.net.2.weight": "1.3.weight",
}


def resampler_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers Resampler state dict under the published names (without the `image_proj.` prefix)."""
    import torch

    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] != "layers":  # latents, proj_in, proj_out, norm_out keep their names
            out[key] = value
            continue
        index, rest = parts[1], ".".join(parts[2:])
        if rest == "attn.to_v.weight":
            continue  # joined to to_k below
        if rest == "attn.to_k.weight":
            value = torch.cat([value, state[key.removesuffix("to_k.weight") + "to_v.weight"]])
        out[f"layers.{index}.{RESAMPLER_RENAMES[rest]}"] = value
    return out

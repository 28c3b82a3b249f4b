"""Activation peaks traced on the meta device: a lower bound that the plans' stated allowance must clear.

The full-size UNet, ControlNet and VAE run on meta tensors (shapes and dtypes, no data, no GPU) under
a dispatch mode that adds up the bytes of every tensor an operator allocates and takes them off again
when the tensor is freed, so `peak` is what PyTorch's allocator would hold at most for activations.
Attention is counted as the fused kernels run it on a GPU (the output only, never the score matrix).
What a trace cannot see (cuDNN workspaces, the allocator's rounding and fragmentation) is why the
allowance in `inference/memory_plan.py` must exceed the trace by a margin, checked by a test.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

GIB = 2**30


class LiveBytes(TorchDispatchMode):
    """Bytes of the tensors operators allocated and that are still alive; the most at once."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if any(r.alias_info is not None for r in func._schema.returns):
            return out  # a view or an in-place result: no new memory
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                nbytes = tensor.untyped_storage().nbytes()
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(tensor, self._free, nbytes)
        return out


def _fused_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any,
                     **kwargs: Any) -> torch.Tensor:
    """What flash / memory-efficient SDPA allocates: the output, not the (tokens x tokens) scores."""
    return query.new_empty((*query.shape[:-1], value.shape[-1]))


@contextlib.contextmanager
def traced() -> Iterator[LiveBytes]:
    sdpa = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _fused_attention
    mode = LiveBytes()
    try:
        with torch.no_grad(), mode:
            yield mode
    finally:
        F.scaled_dot_product_attention = sdpa


def _meta(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    return torch.empty(shape, device="meta", dtype=dtype)


def denoise_step_gib(unet: torch.nn.Module, controlnet: torch.nn.Module, batch: int, side: int = 1024) -> float:
    """One step for `batch` images with CFG (the UNet and ControlNet see twice the batch)."""
    rows, latent = 2 * batch, side // 8
    text = _meta(rows, 77, unet.config.cross_attention_dim)
    added = {"text_embeds": _meta(rows, 1280), "time_ids": _meta(rows, 6)}
    sample, step = _meta(rows, 4, latent, latent), _meta(rows)
    with traced() as mode:
        down, mid = controlnet(sample, step, encoder_hidden_states=text, controlnet_cond=_meta(rows, 3, side, side),
                               added_cond_kwargs=added, return_dict=False)
        unet(sample, step, encoder_hidden_states=text, added_cond_kwargs=added,
             down_block_additional_residuals=down, mid_block_additional_residual=mid, return_dict=False)
    return mode.peak / GIB


def vae_decode_gib(vae: Any, *, tiling: bool, side: int = 1024) -> float:
    """One image through the decoder (plans decode one image at a time), whole or in half-size tiles."""
    vae.use_tiling = tiling
    vae.tile_sample_min_size = side // 2
    vae.tile_latent_min_size = side // 2 // 8
    with traced() as mode:
        vae.decode(_meta(1, 4, side // 8, side // 8))
    return mode.peak / GIB

"""Each rendered prompt encoded once: the text encoders' output, kept in a bounded LRU.

A style's prompt is rendered from its template with the server's background and framing, so a busy
bot sees a handful of distinct prompts, over and over. Encoding them once lets the text encoders
live on the CPU (a memory plan's choice) without any member paying for it twice.

The key is everything the embeddings depend on: the rendered positive and negative text, whether
CFG needs the negative at all, and the LoRA adapters active on the text encoders with their scales
(a style's LoRA that trained the text encoders changes the embeddings; one that did not, does not,
so styles sharing a prompt share its entry).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers import StableDiffusionXLControlNetPipeline

# ~0.6 MB an entry at full size (77 x 2048 bf16, twice, plus the pooled vectors), in host memory.
DEFAULT_CAPACITY = 256

Adapters = tuple[tuple[str, float], ...]
Key = tuple[str, str, bool, Adapters]


@dataclass(frozen=True)
class Embeds:
    """One prompt's row of what `encode_prompt` returns (negatives are None without CFG)."""

    prompt: torch.Tensor
    pooled: torch.Tensor
    negative: torch.Tensor | None
    negative_pooled: torch.Tensor | None


class PromptCache:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Key, Embeds] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def encode(
        self, pipe: StableDiffusionXLControlNetPipeline, prompts: Sequence[str], negative: str, *, cfg: bool,
        adapters: Adapters, device: torch.device,
    ) -> dict[str, torch.Tensor]:
        """The `pipe(...)` keyword arguments for `prompts`, each encoded at most once while it stays cached."""
        keys = [(p, negative if cfg else "", cfg, adapters) for p in prompts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._entries))
        if missing:
            self._encode(pipe, missing, negative, cfg)
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        rows = []
        for key in keys:
            self._entries.move_to_end(key)
            rows.append(self._entries[key])
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        stack = lambda tensors: torch.stack(tensors).to(device)  # noqa: E731
        out = {"prompt_embeds": stack([r.prompt for r in rows]),
               "pooled_prompt_embeds": stack([r.pooled for r in rows])}
        if cfg:
            out["negative_prompt_embeds"] = stack([r.negative for r in rows])
            out["negative_pooled_prompt_embeds"] = stack([r.negative_pooled for r in rows])
        return out

    def _encode(self, pipe: StableDiffusionXLControlNetPipeline, keys: list[Key], negative: str, cfg: bool) -> None:
        """One `encode_prompt` call for every missing prompt, on the text encoders' own device."""
        encoders = [e for e in (pipe.text_encoder, pipe.text_encoder_2) if e is not None]
        dtype = encoders[-1].dtype
        with torch.no_grad(), _upcast_on_cpu(encoders, slow_half_on_cpu(encoders[-1])):
            prompt, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
                prompt=[k[0] for k in keys], device=encoders[-1].device, num_images_per_prompt=1,
                do_classifier_free_guidance=cfg, negative_prompt=[negative] * len(keys),
            )
        keep = lambda t: t.to("cpu", dtype)  # noqa: E731 (the pipeline's dtype, whatever ran the encoders)
        for i, key in enumerate(keys):
            self._entries[key] = Embeds(
                prompt=keep(prompt[i]), pooled=keep(pooled[i]),
                negative=keep(negative_embeds[i]) if cfg else None,
                negative_pooled=keep(negative_pooled[i]) if cfg else None,
            )


def slow_half_on_cpu(encoder: torch.nn.Module) -> bool:
    """A bf16/fp16 model on a CPU without native half-precision matmuls (most desktop CPUs before
    AVX-512 BF16): there PyTorch's half matmuls are many times slower than float32 ones."""
    if next(encoder.parameters()).device.type != "cpu":
        return False
    dtype = next(encoder.parameters()).dtype
    if dtype == torch.bfloat16:
        return not torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if dtype == torch.float16:
        return not torch.ops.mkldnn._is_mkldnn_fp16_supported()
    return False


@contextlib.contextmanager
def _upcast_on_cpu(encoders: list[torch.nn.Module], upcast: bool) -> Iterator[None]:
    """The encoders in float32 for one encode (a miss: rare), back in their own dtype after; exact,
    since every half value is a float32 value."""
    if not upcast:
        yield
        return
    dtypes = [next(e.parameters()).dtype for e in encoders]
    for encoder in encoders:
        encoder.to(torch.float32)
    try:
        yield
    finally:
        for encoder, dtype in zip(encoders, dtypes, strict=True):
            encoder.to(dtype)


def text_encoder_adapters(pipe: StableDiffusionXLControlNetPipeline, active: Adapters | None) -> Adapters:
    """The active adapters that reach the text encoders (only those change the embeddings)."""
    if not active:
        return ()
    loaded = set()
    for encoder in (pipe.text_encoder, pipe.text_encoder_2):
        loaded |= set(getattr(encoder, "peft_config", None) or {})
    return tuple((name, scale) for name, scale in active if name in loaded)

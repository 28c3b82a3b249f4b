"""torch.compile for the UNet, the ControlNet and the VAE decoder, and one LoRA slot that survives it.

A compiled graph is only fast if nothing in it changes between jobs, yet a style switch changes
three things the graph reads: the LoRA weights, the LoRA scale and the IP-Adapter scale. Each one
becomes a tensor written in place, never a Python value a guard could compare:

- every style's LoRA is kept in host memory and hotswapped (diffusers/PEFT `hotswap=True`) into a
  single adapter slot, padded to the widest rank (`enable_lora_hotswap` before the first LoRA);
- the LoRA scale lives in PEFT's scaling tensors (hotswap prepares them) and is written with `copy_`;
  a prompt-only style is scale 0 in the same slot, so the graph has one shape for all styles;
- the IP-Adapter processors' own scale stays 1.0 and the style's scale is folded into the image
  value projections (`to_v_ip`): attention output is linear in its values, so this is exact;
- the ControlNet is called with conditioning scale 1.0 and the style's scale is folded into its
  zero convolutions (the 1x1 convs every residual it hands the UNet leaves through), also exact.
  (Dynamo specialises on a float argument: a style with another scale would recompile.)

Batch sizes and classifier-free guidance on/off change tensor shapes; `warm_up` compiles each
combination the engine will meet before the first member arrives.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import StableDiffusionXLControlNetPipeline
from diffusers.models.attention_processor import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

from mmpp.inference.style_folder import Style
from mmpp.inference.styles import StyleCatalog
from mmpp.logs import log_event

log = logging.getLogger(__name__)

CompileMode = Literal["off", "default", "max-autotune"]
SLOT = "style"
FAST_SLOT = "fast"
_IP_PROCESSORS = (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0)


def compile_pipeline(
    pipe: StableDiffusionXLControlNetPipeline, mode: CompileMode, *, max_graphs: int = 8, backend: str = "inductor"
) -> None:
    """Compile the three models that run per step or per image, in place (the pipeline keeps its modules).

    `dynamic=False`: each batch shape gets its own static graph (the fastest kernels); `max_graphs`
    raises dynamo's per-function cache (the UNet and the ControlNet share one: both forwards go
    through PEFT's same wrapper function) so that every shape warm-up compiled stays cached.
    `backend="eager"` traces and guards exactly as inductor does without generating code: only for
    exercising the guards quickly (`bench/gpu.py --quick`).
    """
    if mode == "off":
        return
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, max_graphs)
    options: dict[str, object] = {"backend": backend, "dynamic": False}
    if backend == "inductor" and mode != "default":
        options["mode"] = mode
    pipe.unet.compile(**options)
    pipe.controlnet.compile(**options)
    pipe.vae.decoder.compile(**options)
    log_event(log, logging.INFO, "pipeline compiled", mode=mode, parts="unet,controlnet,vae.decoder")


def lora_rank(state_dict: dict[str, torch.Tensor]) -> int:
    """The widest rank in a LoRA state dict (A/down matrices have the rank as their first dimension)."""
    ranks = [v.shape[0] for k, v in state_dict.items() if "lora_A" in k or "lora.down" in k or "lora_down" in k]
    return max(ranks, default=0)


@dataclass
class _Lora:
    """What `load_lora_into_unet` needs, kept so a switch reads no file: alphas and the adapter
    config (an alpha other than the rank, per-layer patterns) travel with the weights."""

    state_dict: dict[str, torch.Tensor]
    network_alphas: dict[str, float] | None
    metadata: dict | None
    rank: int

    def load_into(self, pipe: StableDiffusionXLControlNetPipeline, adapter: str, *, hotswap: bool) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            pipe.load_lora_into_unet(
                dict(self.state_dict), network_alphas=self.network_alphas, unet=pipe.unet, adapter_name=adapter,
                metadata=self.metadata, _pipeline=pipe, hotswap=hotswap,
            )


class _Slot:
    """One adapter of the UNet whose weights are hotswapped and whose scale is a tensor."""

    def __init__(self, pipe: StableDiffusionXLControlNetPipeline, name: str, loras: dict[str, _Lora]) -> None:
        self.pipe = pipe
        self.name = name
        self.loras = loras  # key -> LoRA; a style name, or a fast LoRA's path
        self.loaded: str | None = None
        self._scalings: list[tuple[dict[str, torch.Tensor], torch.Tensor]] = []
        self._scale: float | None = None

    def load_widest(self) -> int:
        key = max(self.loras, key=lambda k: self.loras[k].rank)
        self.loras[key].load_into(self.pipe, self.name, hotswap=False)
        self.loaded = key
        return self.loras[key].rank

    def set(self, key: str | None, scale: float) -> None:
        """Hold `key`'s weights at `scale`; None (a prompt-only style, no fast preset) is scale 0."""
        if key is not None and key != self.loaded:
            self.loras[key].load_into(self.pipe, self.name, hotswap=True)
            self.loaded = key
            self._snapshot()
            self._scale = None
        effective = scale if key is not None else 0.0
        if effective != self._scale:
            for scaling, base in self._scalings:
                scaling[self.name].copy_(base * effective)
            self._scale = effective

    def _snapshot(self) -> None:
        """Hotswap writes the new adapter's alpha/r into the scaling tensors; keep it as the scale-1 value."""
        self._scalings = [
            (module.scaling, module.scaling[self.name].clone())
            for module in self.pipe.unet.modules()
            if isinstance(getattr(module, "scaling", None), dict) and self.name in module.scaling
        ]


class StyleSlot:
    """Every style's LoRA hotswapped into one adapter slot of a (to be) compiled pipeline, and every
    fast preset's few-step LoRA into a second one, stacked.

    Build it before `compile_pipeline`: hotswap padding and scaling tensors must exist when the
    graph is traced. A LoRA that does not load takes only its own style out, as in the named-adapter
    path.
    """

    def __init__(self, pipe: StableDiffusionXLControlNetPipeline, style: _Slot, fast: _Slot) -> None:
        self.pipe = pipe
        self._style = style
        self._fast = fast
        self._ip_values: list[tuple[torch.nn.Linear, torch.Tensor]] = []
        self._ip_scale: float | None = None
        self._control_convs: list[tuple[torch.nn.Conv2d, torch.Tensor, torch.Tensor]] = []
        self._control_scale: float | None = None
        self.switch_seconds: list[float] = []

    @classmethod
    def load(cls, pipe: StableDiffusionXLControlNetPipeline, catalog: StyleCatalog) -> StyleSlot:
        from peft.utils.hotswap import prepare_model_for_compiled_hotswap

        from mmpp.inference.loader import ModelUnavailable
        from mmpp.inference.weights import lora_source

        styles: dict[str, _Lora] = {}
        fast: dict[str, _Lora] = {}
        for style in list(catalog.styles.values()):
            try:
                if style.definition.lora is not None:
                    styles[style.name] = read_lora(
                        pipe, *lora_source(style, "lora", style.lora_path, style.definition.lora.weight_name)
                    )
                if style.definition.fast is not None:
                    path = fast_lora_path(style)
                    fast.setdefault(path, read_lora(
                        pipe, *lora_source(style, "fast.lora", path, style.definition.fast.lora.weight_name)
                    ))
            except Exception as exc:  # a corrupt file fails in safetensors, peft or diffusers alike
                styles.pop(style.name, None)
                reason = f"{style.folder}: its LoRA could not be loaded: {_first_line(exc)}"
                catalog.reject(style.name, reason)
                log_event(log, logging.ERROR, "style rejected", reason=reason)
        if not catalog.styles:
            raise ModelUnavailable("No style's LoRA could be loaded: " + "; ".join(catalog.errors))
        slot = cls(pipe, _Slot(pipe, SLOT, styles), _Slot(pipe, FAST_SLOT, fast))
        loaded = [s for s in (slot._style, slot._fast) if s.loras]
        if loaded:
            rank = max(s.load_widest() for s in loaded)
            # Both slots always active; their scale tensors say which one draws (0 = off).
            pipe.unet.set_adapters([s.name for s in loaded], weights=[1.0] * len(loaded))
            # Pads every slot to the widest rank and turns every scaling into a tensor.
            prepare_model_for_compiled_hotswap(pipe.unet, target_rank=rank, config=pipe.unet.peft_config)
            for s in loaded:
                s._snapshot()
        slot._fold_ip_adapter_scale()
        slot._fold_controlnet_scale()
        return slot

    @property
    def lora_bytes(self) -> int:
        """Host memory that the kept LoRA state dicts take."""
        loras = [*self._style.loras.values(), *self._fast.loras.values()]
        return sum(t.numel() * t.element_size() for lora in loras for t in lora.state_dict.values())

    def activate(self, style: Style, scale: float, *, fast: bool = False) -> None:
        """Make `style` at LoRA `scale` (with its fast preset when asked) the one the next call draws.

        Only writes tensors in place: the compiled graphs see the same shapes and Python values.
        """
        started = time.perf_counter()
        self._style.set(style.name if style.name in self._style.loras else None, scale)
        preset = style.definition.fast if fast else None
        if self._fast.loras:
            self._fast.set(fast_lora_path(style) if preset else None, preset.lora.scale if preset else 0.0)
        self.set_ip_adapter_scale(style.definition.ip_adapter_scale)
        self.set_controlnet_scale(style.definition.controlnet_scale)
        self.switch_seconds.append(time.perf_counter() - started)

    def set_ip_adapter_scale(self, scale: float) -> None:
        if scale == self._ip_scale:
            return
        for linear, original in self._ip_values:
            linear.weight.data.copy_(original * scale)
        self._ip_scale = scale

    def set_controlnet_scale(self, scale: float) -> None:
        if scale == self._control_scale:
            return
        for conv, weight, bias in self._control_convs:
            conv.weight.data.copy_(weight * scale)
            conv.bias.data.copy_(bias * scale)
        self._control_scale = scale

    def _fold_controlnet_scale(self) -> None:
        controlnet = self.pipe.controlnet
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            self._control_convs.append((conv, conv.weight.detach().clone(), conv.bias.detach().clone()))
        self._control_scale = 1.0

    def _fold_ip_adapter_scale(self) -> None:
        processors = [p for p in self.pipe.unet.attn_processors.values() if isinstance(p, _IP_PROCESSORS)]
        for processor in processors:
            processor.scale = [1.0] * len(processor.scale)
            for linear in processor.to_v_ip:
                self._ip_values.append((linear, linear.weight.detach().clone()))
        self._ip_scale = 1.0


def fast_lora_path(style: Style) -> str:
    """Where a style's fast-preset LoRA lives (a file next to style.json, or a hub id)."""
    assert style.definition.fast is not None
    source = style.definition.fast.lora.source
    local = style.folder / source
    return str(local.resolve()) if local.exists() else source


def read_lora(pipe: StableDiffusionXLControlNetPipeline, source: str, weight_name: str | None) -> _Lora:
    """A LoRA converted to diffusers' keys, with its alphas, in host memory; `source` and `weight_name`
    as `weights.lora_source` gives them (safetensors only).

    Hotswap cannot reach the text encoders (diffusers does not support it there), so a LoRA that
    trained them is refused for the compiled path rather than drawn without half of its look.
    """
    state_dict, network_alphas, metadata = pipe.lora_state_dict(
        source, weight_name=weight_name, return_lora_metadata=True, use_safetensors=True
    )
    if any(not key.startswith("unet.") for key in state_dict):
        raise ValueError("it trains the text encoders too, which a compiled pipeline cannot hotswap (COMPILE=off can)")
    return _Lora(
        state_dict={k: v.to("cpu") for k, v in state_dict.items()},
        network_alphas=network_alphas,
        metadata=metadata,
        rank=lora_rank(state_dict),
    )


def shapes_to_warm(max_batch_size: int, cfg_modes: Iterable[bool]) -> list[tuple[int, bool]]:
    """(batch size, CFG on) pairs whose graphs a warm-up compiles: CFG doubles the UNet's batch."""
    return [(batch, cfg) for cfg in sorted(set(cfg_modes), reverse=True) for batch in range(1, max_batch_size + 1)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

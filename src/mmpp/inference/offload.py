"""The two ways a memory plan keeps a model's weights off the GPU while it is not drawing.

- `Offloaded`: a model used once per batch (the IP-Adapter's image encoder, the safety checker)
  keeps its weights in host memory, pinned where CUDA is there, and copies them onto the GPU only
  for its own forward. Inference never changes a weight, so going back is free: each parameter
  points at its host copy again and the GPU copy is dropped; nothing is copied back.
- `store_in_fp8`: diffusers' layerwise casting: the UNet's and ControlNet's Linear and Conv
  weights are stored in float8_e4m3fn (half of bf16) and cast up to the compute dtype one layer at
  a time, just before that layer runs. Norms, the in/out projections and every LoRA layer stay in
  the compute dtype, as diffusers' own defaults keep them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from diffusers.hooks import apply_layerwise_casting
from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

STORAGE_DTYPE = torch.float8_e4m3fn
# diffusers' defaults plus the UNet's own `norm` (its `_skip_layerwise_casting_patterns`) and PEFT's
# adapter layers: a LoRA is small and its input must not be rounded to fp8 on its way in.
FP8_SKIP_PATTERNS: tuple[str, ...] = (
    *DEFAULT_SKIP_MODULES_PATTERN, "norm", "lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B",
    "lora_magnitude_vector",
)


def store_in_fp8(model: torch.nn.Module, compute_dtype: torch.dtype) -> None:
    """Weights stored in fp8, computed in `compute_dtype`. Apply after every LoRA is loaded: PEFT
    gives a new adapter its base layer's dtype, which would then be fp8."""
    apply_layerwise_casting(model, STORAGE_DTYPE, compute_dtype, skip_modules_pattern=FP8_SKIP_PATTERNS)


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameters and buffers as stored (fp8 layers count one byte a weight)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class Offloaded:
    """`module` lives in host memory and visits `device` for each forward (or inside `onloaded()`)."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.module = module
        self.device = torch.device(device)
        pin = self.device.type == "cuda"
        # (owner, name, is a parameter, host copy): host copies pinned, so the copy to the GPU runs at
        # full bus speed without a staging buffer. Entries are swapped, never written: any device works.
        self._slots: list[tuple[torch.nn.Module, str, bool, torch.Tensor]] = []
        for owner in module.modules():
            for table, is_param in ((owner._parameters, True), (owner._buffers, False)):
                for name, tensor in table.items():
                    if tensor is None:
                        continue
                    host = tensor.detach().to("cpu")
                    host = host.pin_memory() if pin else host
                    self._slots.append((owner, name, is_param, host))
        self._depth = 0
        self._offload()
        module.register_forward_pre_hook(self._pre_forward, with_kwargs=True)
        module.register_forward_hook(self._post_forward, always_call=True)

    @property
    def nbytes(self) -> int:
        return sum(host.numel() * host.element_size() for _, _, _, host in self._slots)

    @contextlib.contextmanager
    def onloaded(self) -> Iterator[torch.nn.Module]:
        """The weights on `device` for the whole block (nested forwards do not move them again)."""
        self._enter()
        try:
            yield self.module
        finally:
            self._exit()

    def _enter(self) -> None:
        if self._depth == 0:
            self._place(lambda host: host.to(self.device, non_blocking=True))
        self._depth += 1

    def _exit(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._offload()

    def _offload(self) -> None:
        self._place(lambda host: host)

    def _place(self, where: Callable[[torch.Tensor], torch.Tensor]) -> None:
        for owner, name, is_param, host in self._slots:
            tensor = where(host)
            if is_param:
                owner._parameters[name] = torch.nn.Parameter(tensor, requires_grad=False)
            else:
                owner._buffers[name] = tensor

    def _pre_forward(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        self._enter()
        move = lambda v: v.to(self.device) if isinstance(v, torch.Tensor) else v  # noqa: E731
        return tuple(move(a) for a in args), {k: move(v) for k, v in kwargs.items()}

    def _post_forward(self, module: torch.nn.Module, args: tuple, output: object) -> None:
        self._exit()

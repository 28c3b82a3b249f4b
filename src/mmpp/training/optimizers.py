"""`--optimizer adamw|adamw8bit|prodigy`, built as diffusers' advanced DreamBooth script builds them.

8-bit AdamW (bitsandbytes) keeps the two Adam moments in 8 bits, a quarter of AdamW's optimizer
memory; Prodigy (prodigyopt) estimates the step size itself, so its learning rate is a multiplier
around 1.0.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from mmpp.logs import log_event
from mmpp.training.config import TrainConfig

log = logging.getLogger(__name__)

# bitsandbytes keeps 32-bit state for tensors smaller than this (its `min_8bit_size`), so a probe
# must be at least this big to exercise the 8-bit kernels.
_EIGHT_BIT_MIN_SIZE = 4096


def eight_bit_problem(device: torch.device | str = "cpu") -> str | None:
    """None when bitsandbytes' 8-bit AdamW takes a step on `device`, else one line saying why not."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return "needs the bitsandbytes package (pip install bitsandbytes)"
    except Exception as exc:  # a broken native library raises anything at import
        return f"bitsandbytes does not load here ({_first_line(exc)})"
    try:
        probe = torch.nn.Parameter(torch.ones(_EIGHT_BIT_MIN_SIZE, device=device))
        optimizer = bnb.optim.AdamW8bit([probe], lr=1e-3)
        probe.grad = torch.ones_like(probe)
        optimizer.step()
        state = optimizer.state[probe]
        if not any(isinstance(v, torch.Tensor) and v.dtype == torch.uint8 for v in state.values()):
            return f"bitsandbytes {bnb.__version__} keeps 32-bit state on {torch.device(device).type}"
    except Exception as exc:  # bitsandbytes raises RuntimeError, NotImplementedError, AttributeError...
        return f"bitsandbytes {getattr(bnb, '__version__', '?')} cannot run 8-bit Adam on " \
               f"{torch.device(device).type} ({_first_line(exc)})"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def build_optimizer(config: TrainConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    c = config
    if c.optimizer == "prodigy":
        import prodigyopt

        if c.learning_rate <= 0.1:
            log_event(log, logging.WARNING, "Prodigy works best with --learning-rate around 1.0",
                      learning_rate=c.learning_rate)
        for group in groups[1:]:
            # Prodigy adapts one step size; the reference gives the text encoders the UNet's multiplier.
            group["lr"] = c.learning_rate
        return prodigyopt.Prodigy(
            groups, lr=c.learning_rate, betas=(c.adam_beta1, c.adam_beta2), beta3=c.prodigy_beta3,
            weight_decay=c.adam_weight_decay, eps=c.adam_epsilon, decouple=c.prodigy_decouple,
            use_bias_correction=c.prodigy_use_bias_correction, safeguard_warmup=c.prodigy_safeguard_warmup,
        )
    if c.optimizer == "adamw8bit":
        import bitsandbytes as bnb

        cls: type[torch.optim.Optimizer] = bnb.optim.AdamW8bit
    else:
        cls = torch.optim.AdamW
    return cls(groups, betas=(c.adam_beta1, c.adam_beta2), weight_decay=c.adam_weight_decay, eps=c.adam_epsilon)

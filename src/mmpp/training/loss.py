"""The training objective: the prediction target, and Min-SNR-γ loss weighting.

Min-SNR-γ (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy") weights
each timestep's loss as if it were the x₀ (clean image) loss weighted by min(SNR, γ). With
z = αx₀ + σε and α² + σ² = 1 (SNR = α²/σ²):

    ε-loss  ‖ε − ε̂‖² = SNR · ‖x₀ − x̂₀‖²        so the ε-loss weight is  min(SNR, γ) / SNR
    v-loss  ‖v − v̂‖² = (SNR + 1) · ‖x₀ − x̂₀‖²  so the v-loss weight is  min(SNR, γ) / (SNR + 1)

which is the paper's §3.4 and what diffusers' `train_text_to_image*.py` use. diffusers' DreamBooth
LoRA scripts use min(SNR, γ) / SNR + 1 for v-prediction, which is not the paper's weight:
at large SNR it tends to 1 + γ/SNR ≈ 1 instead of γ/SNR, so nearly clean timesteps keep full weight,
exactly what Min-SNR is there to stop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from mmpp.training.config import ConfigError


def target_for(
    scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ConfigError(
        f"the base model's scheduler predicts '{prediction_type}'; training supports epsilon and v_prediction"
    )


def min_snr_weights(snr: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    clamped = torch.clamp(snr, max=gamma)
    return clamped / (snr + 1) if prediction_type == "v_prediction" else clamped / snr


def weighted_mse(
    prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    if weights is None:
        return F.mse_loss(prediction, target)
    per_sample = F.mse_loss(prediction, target, reduction="none").mean(dim=list(range(1, prediction.ndim)))
    return (per_sample * weights).mean()

"""Min-SNR-γ weighting checked against its definition (Hang et al. 2023): the weighted loss of any
prediction equals min(SNR, γ) times the squared error of the clean image that prediction implies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr

from mmpp.training.loss import min_snr_weights, target_for
from mmpp.training.trainer import Trainer
from tests.training.conftest import ConfigFactory

GAMMA = 5.0


def _sdxl_scheduler(prediction_type: str) -> DDPMScheduler:
    return DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                         num_train_timesteps=1000, prediction_type=prediction_type)


def _x0_error_and_loss(prediction_type: str, weights_for: object) -> tuple[torch.Tensor, torch.Tensor]:
    scheduler = _sdxl_scheduler(prediction_type)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 4, 8, 8, generator=generator, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    timesteps = torch.linspace(0, 999, 64).long()
    noisy = scheduler.add_noise(x0, noise, timesteps)
    target = target_for(scheduler, x0, noise, timesteps)
    predicted = target + 0.1 * torch.randn(x0.shape, generator=generator, dtype=torch.float64)

    alpha = scheduler.alphas_cumprod.double()[timesteps].sqrt().view(-1, 1, 1, 1)
    sigma = (1 - scheduler.alphas_cumprod.double()[timesteps]).sqrt().view(-1, 1, 1, 1)
    if prediction_type == "epsilon":
        x0_hat = (noisy - sigma * predicted) / alpha
    else:
        x0_hat = alpha * noisy - sigma * predicted
    snr = compute_snr(scheduler, timesteps).double()
    x0_error = ((x0 - x0_hat) ** 2).mean(dim=(1, 2, 3)) * torch.clamp(snr, max=GAMMA)
    loss = ((predicted - target) ** 2).mean(dim=(1, 2, 3)) * weights_for(snr)  # type: ignore[operator]
    return x0_error, loss


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weights_are_the_papers(prediction_type: str) -> None:
    x0_error, loss = _x0_error_and_loss(prediction_type, lambda snr: min_snr_weights(snr, GAMMA, prediction_type))
    assert torch.allclose(loss, x0_error, rtol=1e-6)


def test_the_dreambooth_scripts_v_prediction_weight_is_not() -> None:
    """diffusers' train_dreambooth_lora_sdxl*.py: min(SNR, γ)/SNR + 1 for v-prediction."""
    x0_error, loss = _x0_error_and_loss("v_prediction", lambda snr: torch.clamp(snr, max=GAMMA) / snr + 1)
    assert not torch.allclose(loss, x0_error, rtol=1e-2)
    # Nearly clean timesteps (t = 0, SNR in the hundreds) keep full weight instead of almost none.
    assert loss[0] > 100 * x0_error[0]


def test_training_with_min_snr_on_a_v_prediction_model(make_train_config: ConfigFactory, model_copy: Path) -> None:
    config_file = model_copy / "sdxl" / "scheduler" / "scheduler_config.json"
    text = config_file.read_text()
    config_file.write_text(text.replace('"prediction_type": "epsilon"', '"prediction_type": "v_prediction"'))
    assert "v_prediction" in config_file.read_text()
    trainer = Trainer(make_train_config("v-pred", base_model=str(model_copy / "sdxl"), snr_gamma=GAMMA,
                                        max_steps=3, report_to="none"))
    result = trainer.run()
    assert trainer.parts.noise_scheduler.config.prediction_type == "v_prediction"
    assert all(np.isfinite(result.losses))

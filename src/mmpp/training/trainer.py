"""DreamBooth + LoRA for SDXL under accelerate, after diffusers' `train_dreambooth_lora_sdxl.py`.

Differences that matter to a server owner: the data is checked before any model loads, every
step's noise comes from a generator seeded by (seed, process, epoch, batch), so a resumed run
retraces an uninterrupted one, and the result is a style folder the bot loads as it is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.training_utils import compute_snr
from tqdm.auto import tqdm

from mmpp.logs import log_event
from mmpp.training.cache import sample_latents, scale_latents
from mmpp.training.checkpoints import checkpoint_step, prune
from mmpp.training.config import TrainConfig
from mmpp.training.export import LORA_FILE
from mmpp.training.loss import min_snr_weights, target_for, weighted_mse
from mmpp.training.models import encode_prompt
from mmpp.training.outputs import History, write_outputs
from mmpp.training.preflight import write_settings
from mmpp.training.setup import TrainingSetup
from mmpp.training.validation import render_validation, validation_prompt

log = logging.getLogger(__name__)

HISTORY_FILE = "history.json"  # in each checkpoint: the steps so far, for the plot of a resumed run


@dataclass(frozen=True)
class StepInfo:
    step: int
    loss: float
    prior_loss: float | None
    lr: float


@dataclass
class TrainResult:
    output: Path
    lora_path: Path
    style_path: Path
    first_step: int
    final_step: int
    resolution: int
    losses: list[float] = field(default_factory=list)
    prior_losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    validation_images: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def step_seed(seed: int, process: int, epoch: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, process, epoch, batch]).generate_state(1)[0])


class Trainer(TrainingSetup):
    """`run()` does everything; `setup()` and `resume()` are separate so tests can look in between."""

    def __init__(self, config: TrainConfig, *, on_step: Callable[[StepInfo], None] | None = None) -> None:
        super().__init__(config)
        self.on_step = on_step
        self.history = History([], [], [])  # steps trained before a resume, for the plot
        self.result: TrainResult | None = None

    # --- resume ---------------------------------------------------------------------------------

    def resume(self) -> int:
        """Restore LoRA weights, optimizer, scheduler and RNG from a checkpoint; returns its step."""
        c = self.config
        if not c.resume_from_checkpoint:
            return 0
        path = self.resume_path  # found, and checked against this run's settings, before models loaded
        if path is None:
            log_event(log, logging.INFO, "no checkpoint to resume from; starting at step 0",
                      folder=str(c.checkpoints_dir))
            return 0
        self.accelerator.load_state(str(path))
        step = checkpoint_step(path)
        if (path / HISTORY_FILE).is_file():
            saved = json.loads((path / HISTORY_FILE).read_text(encoding="utf-8"))
            self.history = History(saved["steps"], saved["losses"], saved["lrs"])
        log_event(log, logging.INFO, "resumed", checkpoint=str(path), step=step)
        return step

    # --- training -------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        self.setup()
        return self.train(self.resume())

    def train(self, start: int = 0) -> TrainResult:
        c, acc = self.config, self.accelerator
        started = time.perf_counter()
        result = TrainResult(
            output=c.output, lora_path=c.output / LORA_FILE, style_path=c.output / "style.json",
            first_step=start, final_step=start, resolution=self.resolution,
        )
        self.result = result
        progress = tqdm(
            total=self.max_steps, initial=start, desc=f"training {c.style_name}", unit="step",
            disable=not acc.is_local_main_process, dynamic_ncols=True,
        )
        step = start
        self._micro: list[tuple[float, float | None]] = []
        batches = self._batches(start) if start < self.max_steps else iter(())
        for batch, epoch, index in batches:
            with acc.accumulate(*self.trained):
                loss, instance_loss, prior_loss = self._loss(batch, epoch, index)
                acc.backward(loss)
                if acc.sync_gradients:
                    acc.clip_grad_norm_(self.params, c.max_grad_norm)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            self._micro.append((instance_loss.item(), None if prior_loss is None else prior_loss.item()))
            if not acc.sync_gradients:
                continue
            step += 1
            info = self._finish_step(step)
            progress.update(1)
            shown = {"loss": f"{info.loss:.4f}", "lr": f"{info.lr:.2e}"}
            if info.prior_loss is not None:
                shown["prior"] = f"{info.prior_loss:.4f}"
            progress.set_postfix(shown)
            if self.on_step is not None:
                self.on_step(info)
            if step >= self.max_steps:
                break
        progress.close()
        result.final_step = step
        self._finish(step)
        result.seconds = time.perf_counter() - started
        return result

    def _batches(self, start: int) -> Iterator[tuple[dict[str, Any], int, int]]:
        """(batch, epoch, index in epoch) from the update step `start` on, skipping what was trained."""
        c = self.config
        accumulation = c.gradient_accumulation_steps
        updates_per_epoch = math.ceil(len(self.dataloader) / accumulation)
        epoch, done_in_epoch = divmod(start, updates_per_epoch)
        skip = done_in_epoch * accumulation
        while True:
            self.dataloader.set_epoch(epoch)
            # Skipping in the sampler rather than the loader avoids decoding images nobody trains on.
            self.sampler.skip = skip * c.train_batch_size * self.accelerator.num_processes
            for index, batch in enumerate(self.dataloader, start=skip):
                yield batch, epoch, index
            skip = 0
            epoch += 1

    def _loss(
        self, batch: dict[str, Any], epoch: int, index: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        c, parts, device = self.config, self.parts, self.accelerator.device
        generator = torch.Generator(device=device).manual_seed(
            step_seed(c.seed, self.accelerator.process_index, epoch, index)
        )
        with torch.no_grad():
            if "latent_params" in batch:
                latents = sample_latents(parts.vae, batch["latent_params"].to(device), generator)
            else:
                pixels = batch["pixel_values"].to(device, dtype=parts.vae.dtype)
                latents = scale_latents(parts.vae, parts.vae.encode(pixels).latent_dist.sample(generator=generator))
        latents = latents.to(self.weight_dtype)
        noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)
        if c.noise_offset:
            noise = noise + c.noise_offset * torch.randn(
                (*latents.shape[:2], 1, 1), generator=generator, device=device, dtype=latents.dtype
            )
        scheduler = parts.noise_scheduler
        timesteps = torch.randint(
            0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator, device=device
        )
        noisy = scheduler.add_noise(latents, noise, timesteps)

        if "prompt_embeds" in batch:
            embeds, pooled = batch["prompt_embeds"], batch["pooled_prompt_embeds"]
        else:
            context = contextlib.nullcontext() if c.train_text_encoder else torch.no_grad()
            with context:
                embeds, pooled = encode_prompt(self.text_encoders, (batch["input_ids_1"], batch["input_ids_2"]))
        prediction = self.unet(
            noisy, timesteps, embeds.to(device, self.weight_dtype),
            added_cond_kwargs={
                "time_ids": batch["time_ids"].to(device, self.weight_dtype),
                "text_embeds": pooled.to(device, self.weight_dtype),
            },
            return_dict=False,
        )[0]

        target = target_for(scheduler, latents, noise, timesteps)

        n = batch["num_instance"]
        prior_loss = None
        if prediction.shape[0] > n:
            prior_loss = F.mse_loss(prediction[n:].float(), target[n:].float())
        weights = None
        if c.snr_gamma is not None:  # Min-SNR-γ weighting: see training/loss.py for the formula's derivation
            snr = compute_snr(scheduler, timesteps[:n])
            weights = min_snr_weights(snr, c.snr_gamma, scheduler.config.prediction_type)
        loss = weighted_mse(prediction[:n].float(), target[:n].float(), weights)
        total = loss if prior_loss is None else loss + c.prior_loss_weight * prior_loss
        return total, loss.detach(), None if prior_loss is None else prior_loss.detach()

    def _finish_step(self, step: int) -> StepInfo:
        c, acc, result = self.config, self.accelerator, self.result
        assert result is not None
        losses = [loss for loss, _ in self._micro]
        priors = [p for _, p in self._micro if p is not None]
        self._micro = []
        info = StepInfo(
            step=step,
            loss=float(np.mean(losses)),
            prior_loss=float(np.mean(priors)) if priors else None,
            lr=float(self.lr_scheduler.get_last_lr()[0]),
        )
        result.losses.append(info.loss)
        result.lrs.append(info.lr)
        if self.tensorboard:
            logged = {"loss": info.loss, "lr": info.lr}
            if info.prior_loss is not None:
                logged["prior_loss"] = info.prior_loss
            acc.log(logged, step=step)
        if info.prior_loss is not None:
            result.prior_losses.append(info.prior_loss)
        if step % c.checkpointing_steps == 0 and acc.is_main_process:
            self._keep_going(self.save_checkpoint, step, "checkpoint")
        if c.validation_prompt and step % c.validation_steps == 0:
            self._keep_going(self.validate, step, "validation images")
        return info

    def _keep_going(self, write: Callable[[int], object], step: int, what: str) -> None:
        """A checkpoint or validation image that cannot be written costs that file, not the run: the
        LoRA in memory is still saved at the end, or rescued if its folder fails too."""
        try:
            write(step)
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
            reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0] or type(exc).__name__
            log_event(log, logging.ERROR, f"{what} not written; training goes on", step=step, error=reason)

    def save_checkpoint(self, step: int) -> Path:
        c = self.config
        prune(c.checkpoints_dir, c.checkpoints_total_limit)
        path = c.checkpoints_dir / f"checkpoint-{step}"
        self.accelerator.save_state(str(path))
        write_settings(path, c)
        if self.result is not None:
            self.result.checkpoints.append(path)
            history = self._history()
            (path / HISTORY_FILE).write_text(json.dumps({"steps": list(history.steps), "losses": list(history.losses),
                                                         "lrs": list(history.lrs)}), encoding="utf-8")
        log_event(log, logging.INFO, "checkpoint saved", path=str(path), step=step)
        return path

    def validate(self, step: int) -> list[Path]:
        c, acc = self.config, self.accelerator
        if not acc.is_main_process or not c.validation_prompt:
            return []
        self._offload(False)
        try:
            paths = render_validation(
                self.parts,
                prompt=validation_prompt(c.validation_prompt, c.trigger),
                count=c.num_validation_images,
                resolution=self.resolution,
                steps=c.validation_inference_steps,
                guidance=c.validation_guidance,
                seed=c.seed,
                device=acc.device,
                folder=c.validation_dir,
                step=step,
                autocast=acc.autocast(),
            )
        finally:
            self._offload(True)
        if self.result is not None:
            self.result.validation_images += paths
        log_event(log, logging.INFO, "validation images", step=step, folder=str(c.validation_dir))
        return paths

    def _history(self) -> History:
        """Earlier runs' steps (after a resume) and this run's."""
        result = self.result
        assert result is not None
        done = range(result.first_step + 1, result.first_step + len(result.losses) + 1)
        return History([*self.history.steps, *done], [*self.history.losses, *result.losses],
                       [*self.history.lrs, *result.lrs])

    def _finish(self, step: int) -> None:
        c, acc, result = self.config, self.accelerator, self.result
        assert result is not None
        acc.wait_for_everyone()
        try:
            if acc.is_main_process:
                if c.validation_prompt and step % c.validation_steps:
                    self._keep_going(self.validate, step, "validation images")
                # The final step's validation image shows the finished style best.
                sample = next((p for p in result.validation_images if p.name.startswith(f"step-{step:06d}-")), None)
                write_outputs(c, self.parts.unet, self.parts.text_encoders if c.train_text_encoder else None,
                              history=self._history(), sample=sample)
                log_event(log, logging.INFO, "style written", folder=str(c.output), step=step)
        finally:
            acc.end_training()


def train(config: TrainConfig, *, on_step: Callable[[StepInfo], None] | None = None) -> TrainResult:
    return Trainer(config, on_step=on_step).run()

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
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import cast_training_params, compute_snr
from peft import inject_adapter_in_model
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mmpp.logs import log_event
from training.batches import collate
from training.cache import sample_latents, scale_latents
from training.checkpoints import checkpoint_step, prune, register_lora_hooks
from training.class_images import draw_class_images
from training.config import DEFAULT_MAX_STEPS, ConfigError, TrainConfig
from training.data import EpochSampler, Example, image_files, load_examples, load_prior_folder
from training.export import LORA_FILE
from training.loss import min_snr_weights, target_for, weighted_mse
from training.models import encode_prompt, load_components, text_lora_config, unet_lora_config
from training.optimizers import build_optimizer
from training.outputs import History, write_outputs
from training.preflight import check_all, has_package, write_settings
from training.train_data import build_train_data
from training.validation import render_validation, validation_prompt

log = logging.getLogger(__name__)

_HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}
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


class Trainer:
    """`run()` does everything; `setup()` and `resume()` are separate so tests can look in between."""

    def __init__(self, config: TrainConfig, *, on_step: Callable[[StepInfo], None] | None = None) -> None:
        self.config = config
        self.on_step = on_step
        self.result: TrainResult | None = None

    # --- setup ----------------------------------------------------------------------------------

    def setup(self) -> None:
        c = self.config
        # Data problems surface before minutes of model loading.
        examples = load_examples(
            c.data, image_column=c.image_column, caption_column=c.caption_column, split=c.dataset_split,
            limit=c.max_train_samples, instance_prompt=c.instance_prompt,
        )
        class_dir = c.class_data_dir
        # With --num-class-images the folder may be short (or not exist yet): the base model fills it below.
        priors = load_prior_folder(class_dir, c.class_prompt) if class_dir and not c.num_class_images else None
        self.tensorboard = c.report_to == "tensorboard" or (c.report_to is None and has_package("tensorboard"))

        # SDXL reads the first text encoder's penultimate layer, so its last layer's LoRA gets no
        # gradient, which multi-GPU (DDP) refuses unless told to look for unused parameters.
        handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if c.train_text_encoder else []
        try:
            self.accelerator = acc = Accelerator(
                gradient_accumulation_steps=c.gradient_accumulation_steps, mixed_precision=c.mixed_precision,
                kwargs_handlers=handlers, log_with="tensorboard" if self.tensorboard else None,
                project_dir=str(c.logs_dir),
            )
        except ValueError as exc:  # e.g. bf16 on a GPU without it
            raise ConfigError(f"--mixed-precision: {exc}") from exc
        if acc.mixed_precision == "fp16" and acc.device.type == "cpu":
            # No fp16 autocast on a CPU: half weights would meet the fp32 VAE unconverted.
            raise ConfigError("--mixed-precision fp16 needs a GPU; on a CPU use bf16 or no")
        # Unwritable folders, missing packages and a checkpoint of another shape: one line, no models loaded.
        self.resume_path = check_all(c, tensorboard=self.tensorboard, device=acc.device)
        if c.allow_tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
        self.parts = parts = load_components(c.base_model, c.vae)
        self.resolution = c.resolution or parts.native_resolution
        if self.resolution % parts.resolution_multiple:
            raise ConfigError(f"--resolution must be a multiple of {parts.resolution_multiple} for this model")
        self.weight_dtype = _HALF.get(acc.mixed_precision, torch.float32)
        self._place_models()
        if c.num_class_images and class_dir is not None:
            priors = self._class_images(class_dir, c.num_class_images)
        self._add_adapters()
        register_lora_hooks(acc, parts.unet, parts.text_encoders if c.train_text_encoder else None)
        self.dataset = self._build_dataset(examples, priors)
        self._build_optimisation()
        if self.tensorboard:
            settings = {k: v if isinstance(v, int | float | bool) else str(v)
                        for k, v in c.model_dump().items() if v is not None}
            acc.init_trackers("mmpp-train", config=settings)

    def _class_images(self, folder: Path, wanted: int) -> list[Example]:
        """The reference's --num_class_images: the base model, before any LoRA, draws what is missing."""
        c, acc = self.config, self.accelerator
        if acc.is_main_process and len(image_files(folder)) < wanted:
            with acc.autocast():
                drawn = draw_class_images(
                    self.parts, folder, wanted=wanted, prompt=c.class_prompt, resolution=self.resolution,
                    batch_size=c.sample_batch_size, steps=c.class_inference_steps, seed=c.seed, device=acc.device,
                    show_progress=acc.is_local_main_process,
                )
            log_event(log, logging.INFO, "class images drawn", folder=str(folder), drawn=len(drawn))
        acc.wait_for_everyone()
        return load_prior_folder(folder, c.class_prompt, limit=wanted)

    def _place_models(self) -> None:
        c, parts, device = self.config, self.parts, self.accelerator.device
        vae_dtype = self.weight_dtype if parts.vae_half_safe else torch.float32
        for module, dtype in ((parts.unet, self.weight_dtype), (parts.vae, vae_dtype),
                              *((encoder, self.weight_dtype) for encoder in parts.text_encoders)):
            # Casting only when needed: diffusers warns on any dtype cast of the VAE, even a no-op.
            if module.dtype == dtype:
                module.to(device)
            else:
                module.to(device, dtype=dtype)
        if c.gradient_checkpointing:
            parts.unet.enable_gradient_checkpointing()
            if c.train_text_encoder:
                for encoder in parts.text_encoders:
                    encoder.gradient_checkpointing_enable()

    def _add_adapters(self) -> None:
        c, parts = self.config, self.parts
        set_seed(c.seed)  # the LoRA's random init
        parts.unet.add_adapter(unet_lora_config(c.rank, c.alpha, c.lora_dropout, c.use_dora))
        trained: list[torch.nn.Module] = [parts.unet]
        if c.train_text_encoder:
            for encoder in parts.text_encoders:
                # PEFT's own injection, as transformers' `add_adapter` does internally: transformers 5's
                # wrapper refuses PEFT < 0.22 (none is published yet), though loading needs no such check.
                inject_adapter_in_model(text_lora_config(c.rank, c.alpha, c.lora_dropout, c.use_dora), encoder,
                                        "default")
                encoder.train()
            trained += list(parts.text_encoders)
        parts.unet.train()
        if self.weight_dtype != torch.float32:
            # Half-precision base weights, fp32 LoRA weights: optimiser updates are too small for fp16.
            cast_training_params(trained, dtype=torch.float32)

    def _build_dataset(self, examples: list[Example], priors: list[Example] | None) -> Any:
        built = build_train_data(self.config, self.parts, examples, priors, resolution=self.resolution,
                                 device=self.accelerator.device)
        self.buckets = built.buckets
        self.offloaded = built.offloaded
        self._offload(True)
        return built.dataset

    def _offload(self, away: bool) -> None:
        """Encoders that caching made idle leave the GPU, and come back only to draw validation images."""
        if self.accelerator.device.type == "cpu":
            return
        for module in self.offloaded:
            module.to("cpu" if away else self.accelerator.device)

    def _build_optimisation(self) -> None:
        c, parts, acc = self.config, self.parts, self.accelerator
        groups: list[dict[str, Any]] = [
            {"params": [p for p in parts.unet.parameters() if p.requires_grad], "lr": c.learning_rate}
        ]
        if c.train_text_encoder:
            for encoder in parts.text_encoders:
                groups.append({"params": [p for p in encoder.parameters() if p.requires_grad], "lr": c.text_encoder_lr})
        self.params = [p for g in groups for p in g["params"]]
        optimizer = build_optimizer(c, groups)
        self.sampler = EpochSampler(len(self.dataset), c.seed, buckets=self.buckets, batch_size=c.train_batch_size)
        loader = DataLoader(
            self.dataset, batch_size=c.train_batch_size, sampler=self.sampler, collate_fn=collate,
            num_workers=c.dataloader_num_workers,
        )
        # As in the reference: --max-steps wins, else --num-train-epochs passes over the data.
        per_process = math.ceil(len(loader) / acc.num_processes)
        self.updates_per_epoch = math.ceil(per_process / c.gradient_accumulation_steps)
        if c.max_steps is not None:
            self.max_steps = c.max_steps
        elif c.num_train_epochs is not None:
            self.max_steps = c.num_train_epochs * self.updates_per_epoch
        else:
            self.max_steps = DEFAULT_MAX_STEPS
        # A prepared scheduler steps once per process per update, hence the scaling (as in diffusers).
        scheduler = get_scheduler(
            c.lr_scheduler, optimizer=optimizer,
            num_warmup_steps=c.lr_warmup_steps * acc.num_processes,
            num_training_steps=self.max_steps * acc.num_processes,
            num_cycles=c.lr_num_cycles, power=c.lr_power,
        )
        if c.train_text_encoder:
            unet, te1, te2, self.optimizer, self.dataloader, self.lr_scheduler = acc.prepare(
                parts.unet, *parts.text_encoders, optimizer, loader, scheduler
            )
            self.text_encoders: tuple[torch.nn.Module, torch.nn.Module] = (te1, te2)
            self.trained: list[torch.nn.Module] = [unet, te1, te2]
        else:
            unet, self.optimizer, self.dataloader, self.lr_scheduler = acc.prepare(
                parts.unet, optimizer, loader, scheduler
            )
            self.text_encoders = parts.text_encoders
            self.trained = [unet]
        self.unet = unet
        # Skipping works on the sampler the prepared loader really iterates.
        prepared = self.dataloader.get_sampler()
        if isinstance(prepared, EpochSampler):
            self.sampler = prepared

    # --- resume ---------------------------------------------------------------------------------

    def resume(self) -> int:
        """Restore LoRA weights, optimizer, scheduler and RNG from a checkpoint; returns its step."""
        c = self.config
        self.history = History([], [], [])
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
        if not hasattr(self, "history"):
            self.history = History([], [], [])
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
            self.save_checkpoint(step)
        if c.validation_prompt and step % c.validation_steps == 0:
            self.validate(step)
        return info

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
                    self.validate(step)
                # The final step's validation image shows the finished style best.
                sample = next((p for p in result.validation_images if p.name.startswith(f"step-{step:06d}-")), None)
                write_outputs(c, self.parts.unet, self.parts.text_encoders if c.train_text_encoder else None,
                              history=self._history(), sample=sample)
                log_event(log, logging.INFO, "style written", folder=str(c.output), step=step)
        finally:
            acc.end_training()


def train(config: TrainConfig, *, on_step: Callable[[StepInfo], None] | None = None) -> TrainResult:
    return Trainer(config, on_step=on_step).run()

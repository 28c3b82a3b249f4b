"""Everything before the first step: data checked, folders and packages checked, models loaded and
placed, class images drawn, LoRA adapters added, caches built, optimiser and scheduler prepared."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import cast_training_params
from peft import inject_adapter_in_model
from torch.utils.data import DataLoader

from mmpp.logs import log_event
from mmpp.training.batches import collate
from mmpp.training.checkpoints import register_lora_hooks
from mmpp.training.class_images import draw_class_images
from mmpp.training.config import DEFAULT_MAX_STEPS, ConfigError, TrainConfig
from mmpp.training.data import Example, image_files, load_examples, load_prior_folder
from mmpp.training.models import load_components, text_lora_config, unet_lora_config
from mmpp.training.optimizers import build_optimizer
from mmpp.training.preflight import check_all, has_package
from mmpp.training.sampler import EpochSampler
from mmpp.training.train_data import build_train_data

log = logging.getLogger(__name__)

_HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}


class TrainingSetup:
    """The first half of `Trainer`: `setup()` leaves models, data, optimiser and scheduler ready."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

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
                # A missing tensorboard is refused in one line below, not warned about here.
                kwargs_handlers=handlers,
                log_with="tensorboard" if self.tensorboard and has_package("tensorboard") else None,
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

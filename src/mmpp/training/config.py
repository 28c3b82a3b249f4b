"""Every training option in one typed, validated object, built from the CLI (or from code in tests/bench).

Names and defaults follow diffusers' `train_dreambooth_lora_sdxl.py` so its users find what they expect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from mmpp.errors import UserFacingError
from mmpp.inference.style_definition import StyleDefinition

LrScheduler = Literal[
    "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"
]
MixedPrecision = Literal["no", "fp16", "bf16"]
Optimizer = Literal["adamw", "adamw8bit", "prodigy"]
ReportTo = Literal["tensorboard", "none"]

DEFAULT_CLASS_PROMPT = "a photo of a person's face"
DEFAULT_MAX_STEPS = 500


class ConfigError(UserFacingError):
    code = "bad_training_option"


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- what to train on, and where it goes -----------------------------------------------------
    data: str = Field(description="A local image folder with metadata.jsonl, or a Hugging Face dataset name.")
    style_name: str
    output: Path = Field(description="STYLES_DIR/NAME; its folder name must be the style name.")
    base_model: str = Field(description="SDXL pipeline folder or hub id (needs unet, vae, text encoders).")
    vae: str | None = Field(default=None, description="A VAE that is safe in half precision (fp16-fix).")
    image_column: str = "image"
    caption_column: str = "text"
    dataset_split: str = "train"
    max_train_samples: int | None = Field(default=None, ge=1)
    instance_token: str | None = Field(default=None, description="Prepended to captions; the style's trigger.")
    instance_prompt: str | None = Field(
        default=None, description="The caption of every image of a folder without metadata.jsonl."
    )
    prior_data: Path | None = None
    num_class_images: int | None = Field(
        default=None, ge=1, description="Class images to train on; missing ones are drawn by the base model."
    )
    class_prompt: str = DEFAULT_CLASS_PROMPT
    sample_batch_size: int = Field(default=4, ge=1, description="Batch size for drawing class images.")
    class_inference_steps: int = Field(default=50, ge=1)
    prior_loss_weight: float = Field(default=1.0, ge=0.0)
    description: str = ""
    display_name: str = ""

    # --- images ------------------------------------------------------------------------------------
    resolution: int | None = Field(default=None, ge=8, description="Default: the model's native resolution.")
    center_crop: bool = False
    random_flip: bool = False
    aspect_buckets: bool = Field(
        default=False, description="Train each image at the ~resolution² size nearest its aspect ratio."
    )
    repeats: int = Field(default=1, ge=1, description="How many times each image appears per epoch.")

    # --- optimisation ------------------------------------------------------------------------------
    train_batch_size: int = Field(default=1, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0)
    text_encoder_lr: float = Field(default=5e-6, gt=0)
    lr_scheduler: LrScheduler = "constant"
    lr_warmup_steps: int = Field(default=0, ge=0)
    lr_num_cycles: int = Field(default=1, ge=1)
    lr_power: float = 1.0
    max_steps: int | None = Field(default=None, ge=1, description="Default: from --num-train-epochs, else 500.")
    num_train_epochs: int | None = Field(default=None, ge=1)
    optimizer: Optimizer = "adamw"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-4
    adam_epsilon: float = 1e-8
    prodigy_beta3: float | None = Field(default=None, gt=0, lt=1)
    prodigy_decouple: bool = True
    prodigy_use_bias_correction: bool = True
    prodigy_safeguard_warmup: bool = True
    max_grad_norm: float = Field(default=1.0, gt=0)
    snr_gamma: float | None = Field(default=None, gt=0)
    noise_offset: float = Field(default=0.0, ge=0)

    # --- LoRA --------------------------------------------------------------------------------------
    rank: int = Field(default=4, ge=1)
    lora_alpha: float | None = Field(default=None, gt=0, description="Default: the rank (scale 1).")
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    train_text_encoder: bool = False
    use_dora: bool = False
    output_kohya_format: bool = False

    # --- machinery ---------------------------------------------------------------------------------
    mixed_precision: MixedPrecision | None = Field(default=None, description="None: accelerate's setting.")
    gradient_checkpointing: bool = False
    cache_latents: bool = Field(
        default=True, description="Encode every image once (and every caption, while the text encoders are frozen)."
    )
    allow_tf32: bool = False
    dataloader_num_workers: int = Field(default=0, ge=0)
    seed: int = Field(default=0, ge=0)
    checkpointing_steps: int = Field(default=500, ge=1)
    checkpoints_total_limit: int | None = Field(default=None, ge=1)
    resume_from_checkpoint: str | None = Field(default=None, description="'latest' or a checkpoint folder.")
    validation_prompt: str | None = None
    num_validation_images: int = Field(default=2, ge=1)
    validation_steps: int = Field(default=100, ge=1)
    validation_inference_steps: int = Field(default=25, ge=1)
    validation_guidance: float = Field(default=5.0, ge=0)
    report_to: ReportTo | None = Field(default=None, description="None: tensorboard where it is installed.")

    @field_validator("style_name")
    @classmethod
    def _style_slug(cls, value: str) -> str:
        try:
            StyleDefinition.model_validate({"name": value, "lora": {"source": "lora.safetensors"}})
        except ValidationError as exc:
            raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None
        return value

    @field_validator("output")
    @classmethod
    def _named_after_style(cls, value: Path, info: ValidationInfo) -> Path:
        # The style catalog refuses a folder whose name differs from its definition's name, so a
        # mismatch would train for an hour and then produce a style the bot skips.
        name = info.data.get("style_name")
        if name and value.name != name:
            raise ValueError(f"must be STYLES_DIR/{name}, a folder named after the style (got {value})")
        return value

    @model_validator(mode="after")
    def _kohya_without_dora(self) -> TrainConfig:
        # diffusers reads a kohya file's DoRA scales back into a different model than was trained
        # (measured on the tiny model), so such a copy would draw something else.
        if self.output_kohya_format and self.use_dora:
            raise ValueError("--output-kohya-format: not with --use-dora (diffusers reads kohya DoRA files back "
                             "differently); the diffusers-layout lora.safetensors is written as always")
        return self

    @property
    def trigger(self) -> str:
        return self.instance_token or self.instance_prompt or f"{self.style_name.replace('-', '')} style"

    @property
    def alpha(self) -> float:
        return self.lora_alpha if self.lora_alpha is not None else float(self.rank)

    def caption(self, text: str) -> str:
        """The trigger leads every caption so the LoRA binds the look to it (once: an --instance-prompt
        caption already holds it)."""
        text = text.strip()
        return text if self.trigger in text else f"{self.trigger}, {text}"

    @property
    def checkpoints_dir(self) -> Path:
        return self.output / "checkpoints"

    @property
    def validation_dir(self) -> Path:
        return self.output / "validation"

    @property
    def logs_dir(self) -> Path:
        return self.output / "logs"

    @property
    def class_data_dir(self) -> Path | None:
        """Where class images are read (and, with --num-class-images, drawn into)."""
        if self.prior_data is not None:
            return self.prior_data
        return self.output / "class-images" if self.num_class_images else None


def make_config(**fields: object) -> TrainConfig:
    """Validate options; the first problem becomes one line naming the option."""
    try:
        return TrainConfig.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        option = f"--{where.replace('_', '-')}" if where else "options"
        message = str(first["msg"]).removeprefix("Value error, ")
        if not where and message.startswith("--"):  # a check across options names its own
            raise ConfigError(message) from exc
        raise ConfigError(f"{option}: {message}") from exc

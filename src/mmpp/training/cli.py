"""`mmpp train`, `mmpp prepare-data` and `mmpp style import`.

Heavy imports (torch, diffusers) happen inside the handlers so `mmpp --help` stays instant.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from mmpp.training.config import DEFAULT_CLASS_PROMPT, DEFAULT_MAX_STEPS

_BOOL = argparse.BooleanOptionalAction


def register(subparsers: Any) -> None:
    _register_train(subparsers)
    _register_prepare(subparsers)
    _register_style(subparsers)


# --- train ---------------------------------------------------------------------------------------


def _register_train(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a style LoRA (DreamBooth + LoRA on SDXL) and write it as a style",
        description="Train an SDXL LoRA on a folder of captioned images (metadata.jsonl) or a Hugging Face "
        "dataset and write STYLES_DIR/NAME (lora.safetensors + style.json). Runs under `accelerate launch`.",
    )
    p.add_argument("--data", "--instance-data-dir", required=True,
                   help="image folder (with metadata.jsonl, or with --instance-prompt), or a hub dataset name")
    p.add_argument("--style-name", required=True, help="style name: lowercase letters, digits, dashes")
    p.add_argument("--output", required=True, type=Path, help="STYLES_DIR/NAME")
    models = p.add_argument_group("model")
    models.add_argument("--model-dir", type=Path, help="a folder laid out like `mmpp make-tiny-model`")
    models.add_argument("--base-model", help="SDXL pipeline folder or hub id (default: BASE_MODEL setting)")
    models.add_argument("--vae", help="a VAE safe in fp16 (default: VAE setting; with --model-dir its vae/)")
    data = p.add_argument_group("data")
    data.add_argument("--image-column", default="image", help="hub dataset image column (default: image)")
    data.add_argument("--caption-column", default="text", help="caption field/column (default: text)")
    data.add_argument("--dataset-split", default="train")
    data.add_argument("--max-train-samples", type=int)
    data.add_argument("--instance-token", help="prepended to captions; the style's trigger (default: the instance "
                      "prompt, else '<name> style')")
    data.add_argument("--instance-prompt", help="the caption of every image of a folder without metadata.jsonl")
    data.add_argument("--prior-data", "--class-data-dir", type=Path,
                      help="class images (e.g. SFHQ faces): enables prior preservation")
    data.add_argument("--num-class-images", type=int,
                      help="train on this many class images; the base model draws the missing ones into --prior-data "
                      "(default folder: OUTPUT/class-images)")
    data.add_argument("--class-prompt", default=DEFAULT_CLASS_PROMPT)
    data.add_argument("--sample-batch-size", type=int, default=4, help="batch size for drawing class images")
    data.add_argument("--class-inference-steps", type=int, default=50, help="steps per drawn class image")
    data.add_argument("--prior-loss-weight", type=float, default=1.0)
    data.add_argument("--resolution", type=int, help="default: the model's native resolution")
    data.add_argument("--aspect-buckets", action=_BOOL, default=False,
                      help="train each image at the ~resolution² size nearest its aspect ratio, not a square crop")
    data.add_argument("--center-crop", action=_BOOL, default=False)
    data.add_argument("--random-flip", action=_BOOL, default=False)
    data.add_argument("--repeats", type=int, default=1, help="how many times each image appears per epoch")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--train-batch-size", type=int, default=1)
    opt.add_argument("--gradient-accumulation-steps", type=int, default=1)
    opt.add_argument("--learning-rate", type=float, default=1e-4)
    opt.add_argument("--text-encoder-lr", type=float, default=5e-6)
    opt.add_argument("--lr-scheduler", default="constant",
                     choices=["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts",
                              "polynomial"])
    opt.add_argument("--lr-warmup-steps", type=int, default=0)
    opt.add_argument("--lr-num-cycles", type=int, default=1)
    opt.add_argument("--lr-power", type=float, default=1.0)
    opt.add_argument("--max-steps", "--max-train-steps", type=int,
                     help=f"default: from --num-train-epochs, else {DEFAULT_MAX_STEPS}")
    opt.add_argument("--num-train-epochs", type=int, help="passes over the data (--max-steps wins when both are given)")
    opt.add_argument("--optimizer", type=str.lower, choices=["adamw", "adamw8bit", "prodigy"], default="adamw",
                     help="adamw8bit needs bitsandbytes, prodigy needs prodigyopt (pip install 'mmpp-bot[train]')")
    opt.add_argument("--use-8bit-adam", dest="optimizer", action="store_const", const="adamw8bit",
                     help="the same as --optimizer adamw8bit")
    opt.add_argument("--adam-beta1", type=float, default=0.9)
    opt.add_argument("--adam-beta2", type=float, default=0.999)
    opt.add_argument("--adam-epsilon", type=float, default=1e-8)
    opt.add_argument("--prodigy-beta3", type=float, help="default: the square root of --adam-beta2")
    opt.add_argument("--prodigy-decouple", action=_BOOL, default=True)
    opt.add_argument("--prodigy-use-bias-correction", action=_BOOL, default=True)
    opt.add_argument("--prodigy-safeguard-warmup", action=_BOOL, default=True)
    opt.add_argument("--adam-weight-decay", type=float, default=1e-4)
    opt.add_argument("--max-grad-norm", type=float, default=1.0)
    opt.add_argument("--snr-gamma", type=float, help="Min-SNR loss weighting (5.0 is usual)")
    opt.add_argument("--noise-offset", type=float, default=0.0)
    lora = p.add_argument_group("LoRA")
    lora.add_argument("--rank", type=int, default=4)
    lora.add_argument("--lora-alpha", type=float, help="default: the rank")
    lora.add_argument("--lora-dropout", type=float, default=0.0)
    lora.add_argument("--train-text-encoder", action=_BOOL, default=False)
    lora.add_argument("--use-dora", action=_BOOL, default=False, help="weight-decomposed LoRA (DoRA)")
    lora.add_argument("--output-kohya-format", action=_BOOL, default=False,
                      help="also write OUTPUT/NAME.safetensors in kohya's layout (A1111, ComfyUI)")
    run = p.add_argument_group("run")
    run.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], help="default: accelerate's setting")
    run.add_argument("--gradient-checkpointing", action=_BOOL, default=False)
    run.add_argument("--cache-latents", action=_BOOL, default=True,
                     help="encode images once (and captions, with frozen text encoders); default on")
    run.add_argument("--allow-tf32", action=_BOOL, default=False)
    run.add_argument("--dataloader-num-workers", type=int, default=0)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--checkpointing-steps", type=int, default=500)
    run.add_argument("--checkpoints-total-limit", type=int)
    run.add_argument("--resume-from-checkpoint", help="'latest' or a checkpoint folder")
    run.add_argument("--report-to", choices=["tensorboard", "none"],
                     help="TensorBoard logs in OUTPUT/logs (default: where tensorboard is installed)")
    val = p.add_argument_group("validation")
    val.add_argument("--validation-prompt")
    val.add_argument("--num-validation-images", type=int, default=2)
    val.add_argument("--validation-steps", type=int, default=100)
    val.add_argument("--validation-inference-steps", type=int, default=25)
    style = p.add_argument_group("style")
    style.add_argument("--description", default="")
    style.add_argument("--display-name", default="")
    p.set_defaults(func=_train)


_TRAIN_FIELDS = (
    "data", "style_name", "output", "vae", "image_column", "caption_column", "dataset_split",
    "max_train_samples", "instance_token", "instance_prompt", "prior_data", "num_class_images", "class_prompt",
    "sample_batch_size", "class_inference_steps", "prior_loss_weight", "resolution", "aspect_buckets",
    "center_crop", "random_flip", "repeats", "train_batch_size", "gradient_accumulation_steps", "learning_rate",
    "text_encoder_lr", "lr_scheduler", "lr_warmup_steps", "lr_num_cycles", "lr_power", "max_steps",
    "num_train_epochs", "optimizer", "adam_beta1", "adam_beta2", "adam_epsilon", "prodigy_beta3",
    "prodigy_decouple", "prodigy_use_bias_correction", "prodigy_safeguard_warmup",
    "adam_weight_decay", "max_grad_norm", "snr_gamma", "noise_offset", "rank", "lora_alpha", "lora_dropout",
    "train_text_encoder", "use_dora", "output_kohya_format", "mixed_precision", "gradient_checkpointing",
    "cache_latents", "allow_tf32", "dataloader_num_workers", "seed", "checkpointing_steps",
    "checkpoints_total_limit", "resume_from_checkpoint", "report_to",
    "validation_prompt", "num_validation_images", "validation_steps", "validation_inference_steps",
    "description", "display_name",
)


def _model_sources(args: argparse.Namespace) -> tuple[str, str | None]:
    """(base model, vae): --base-model / --model-dir / the settings, in that order."""
    from mmpp.model_sources import ModelSources
    from mmpp.settings import load_settings

    if args.base_model:
        return args.base_model, args.vae
    if args.model_dir:
        # As the bot reads it: the folder's vae/ (the fp16-fix VAE's stand-in) where there is one.
        sources = ModelSources.from_model_dir(args.model_dir, vae=(Path(args.model_dir) / "vae").is_dir())
        return sources.base_model, args.vae or sources.vae
    settings = load_settings(args.env_file)
    return settings.sources.base_model, args.vae or settings.sources.vae


def _train(args: argparse.Namespace) -> int:
    from mmpp.training.config import make_config
    from mmpp.training.trainer import Trainer

    # accelerate narrates every file of every checkpoint at INFO; the trainer logs one line per checkpoint.
    logging.getLogger("accelerate").setLevel(max(logging.WARNING, logging.getLogger().level))
    base_model, vae = _model_sources(args)
    fields = {name: getattr(args, name) for name in _TRAIN_FIELDS}
    fields.update(base_model=base_model, vae=vae)
    config = make_config(**{k: v for k, v in fields.items() if v is not None})
    trainer = Trainer(config)
    result = trainer.run()
    if not trainer.accelerator.is_main_process:
        return 0
    print(f"Trained steps {result.first_step}-{result.final_step} in {result.seconds:.0f} s at {result.resolution}px.")
    print(f"Style '{config.style_name}' written to {config.output} (trigger: {config.trigger}).")
    if result.validation_images:
        print(f"Validation images: {config.validation_dir}")
    if config.output_kohya_format:
        print(f"Kohya copy (A1111, ComfyUI): {config.output / (config.style_name + '.safetensors')}")
    return 0


# --- prepare-data --------------------------------------------------------------------------------


def _register_prepare(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "prepare-data",
        help="make a training folder from raw images (face crop or center crop), reporting what was dropped",
    )
    p.add_argument("source", type=Path, help="folder of raw images (captions: metadata.jsonl or NAME.txt)")
    p.add_argument("--output", required=True, type=Path, help="new folder for the prepared images")
    p.add_argument("--kind", choices=["style", "face"], required=True,
                   help="face: crop around the one face; style: center crop")
    p.add_argument("--resolution", type=int, default=1024, help="output side in pixels (default 1024)")
    p.add_argument("--min-size", type=int, help="drop images with a shorter side (default: resolution / 2)")
    p.add_argument("--caption", help="caption for images without one (face default: a class prompt)")
    p.add_argument("--caption-column", default="text")
    p.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from mmpp.training.prepare import prepare_data

    report = prepare_data(
        args.source, args.output, kind=args.kind, resolution=args.resolution, min_size=args.min_size,
        caption=args.caption, caption_column=args.caption_column,
    )
    print(f"{args.output}: {report.summary()}")
    for dropped in report.dropped:
        print(f"  dropped {dropped.file}: {dropped.reason}")
    return 0


# --- style import --------------------------------------------------------------------------------


def _register_style(subparsers: Any) -> None:
    p = subparsers.add_parser("style", help="manage style folders")
    sub = p.add_subparsers(dest="style_command", metavar="ACTION", required=True)
    imp = sub.add_parser(
        "import",
        help="turn a LoRA trained elsewhere (diffusers or kohya layout) into a style",
    )
    imp.add_argument("lora", type=Path, help="LORA.safetensors")
    imp.add_argument("--name", required=True, help="style name: lowercase letters, digits, dashes")
    imp.add_argument("--styles-dir", type=Path, help="default: MODEL_DIR/styles or the STYLES_DIR setting")
    imp.add_argument("--model-dir", type=Path, help="a folder laid out like `mmpp make-tiny-model`")
    imp.add_argument("--base-model", help="SDXL folder or hub id the LoRA is checked against")
    imp.add_argument("--trigger", action="append", default=[], help="trigger word(s) the LoRA was trained with")
    imp.add_argument("--scale", type=float, default=1.0, help="LoRA scale (default 1.0)")
    imp.add_argument("--description", default="")
    imp.add_argument("--unet-only", action="store_true", help="leave out the LoRA's text-encoder layers")
    imp.add_argument("--force", action="store_true", help="replace an existing style of that name")
    imp.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    from mmpp.model_sources import ModelSources
    from mmpp.settings import load_settings
    from mmpp.training.importer import import_lora

    if args.model_dir:
        sources = ModelSources.from_model_dir(args.model_dir)
    else:
        sources = load_settings(args.env_file).sources
    folder = import_lora(
        args.lora,
        name=args.name,
        styles_dir=args.styles_dir or sources.styles_dir,
        base_model=args.base_model or sources.base_model,
        trigger_words=args.trigger,
        scale=args.scale,
        description=args.description,
        unet_only=args.unet_only,
        force=args.force,
    )
    print(f"Style '{args.name}' written to {folder}. Restart the bot to load it.")
    return 0

"""SDXL base's pieces with random weights (UNet, VAE, both CLIP text towers and their tokenizer) and the
canny ControlNet, which is one constructor call on the UNet's own block layout."""

from __future__ import annotations

from diffusers import AutoencoderKL, ControlNetModel, EulerDiscreteScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from mmpp.inference.testing.random_configs import SDXL_SCHEDULER
from mmpp.inference.testing.random_spec import RandomModelSpec


def clip_tokenizer(vocab_size: int = 49408) -> CLIPTokenizer:
    """A CLIP tokenizer with CLIP's vocabulary size and special-token ids, built offline.

    CLIP's own BPE merges live on the hub; a random model needs only that every id stays inside the
    embedding and that <|startoftext|>/<|endoftext|> are the ids the text encoders expect (49406,
    49407), and every prompt is padded to 77 tokens anyway, so the work per prompt is the same.
    Byte-level symbols cover every string; the rest of the vocabulary is unreachable filler.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = [chr(b) for b in printable] + [chr(256 + n) for n in range(256 - len(printable))]
    vocab: dict[str, int] = {}
    for sym in symbols:
        vocab[sym] = len(vocab)
    for sym in symbols:
        vocab[sym + "</w>"] = len(vocab)
    while len(vocab) < vocab_size - 2:
        vocab[f"<|unused{len(vocab)}|>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_unet(spec: RandomModelSpec) -> UNet2DConditionModel:
    return UNet2DConditionModel(**spec.unet)


def build_controlnet(spec: RandomModelSpec) -> ControlNetModel:
    return ControlNetModel(**spec.controlnet)


def build_vae(spec: RandomModelSpec) -> AutoencoderKL:
    return AutoencoderKL(**spec.vae)


def build_text_encoders(spec: RandomModelSpec) -> tuple[CLIPTextModel, CLIPTextModelWithProjection]:
    return (
        CLIPTextModel(CLIPTextConfig(**spec.text_encoder)),
        CLIPTextModelWithProjection(CLIPTextConfig(**spec.text_encoder_2)),
    )


def sdxl_scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler.from_config(SDXL_SCHEDULER)

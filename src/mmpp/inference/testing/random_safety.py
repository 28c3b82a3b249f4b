"""The image safety checker at production size (CompVis': CLIP ViT-L/14's vision tower and the concept
embeddings) with random weights and thresholds it never reaches."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import CLIPConfig, CLIPImageProcessor

from mmpp.inference.testing.random_spec import FULL, RandomModelSpec, default_dtype

if TYPE_CHECKING:
    from mmpp.inference.safety import SafetyChecker


def build_safety_model(spec: RandomModelSpec) -> StableDiffusionSafetyChecker:
    # The text tower is never built by the checker, but CLIPConfig always describes one.
    text = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    config = CLIPConfig(text_config=text, vision_config=spec.safety_checker, projection_dim=spec.safety_projection_dim)
    model = StableDiffusionSafetyChecker(config)
    with torch.no_grad():
        # Thresholds no cosine similarity reaches: random concepts must not filter the benchmark's images.
        model.concept_embeds_weights.fill_(1.0)
        model.special_care_embeds_weights.fill_(1.0)
    return model


def safety_image_processor(spec: RandomModelSpec = FULL) -> CLIPImageProcessor:
    side = spec.safety_checker["image_size"]
    return CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})


def build_random_safety_checker(
    spec: RandomModelSpec = FULL, *, device: torch.device | str = "cuda", dtype: torch.dtype = torch.bfloat16,
) -> SafetyChecker:
    """The image safety check at production size, in memory (it never flags: see `build_safety_model`)."""
    from mmpp.inference.safety import SafetyChecker

    with torch.device(device), default_dtype(dtype):
        model = build_safety_model(spec)
    return SafetyChecker(model, safety_image_processor(spec), source="random")

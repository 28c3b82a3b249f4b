"""A tiny random-weight safety checker in the layout of `CompVis/stable-diffusion-safety-checker`.

`SafetyChecker.load` reads it through the same `from_pretrained` calls as the production one. Its
thresholds are parameters: by default no image crosses them (a cosine similarity never exceeds 1),
and a test that needs a flagged image writes one whose thresholds every image crosses (-1).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import CLIPConfig, CLIPImageProcessor

PROJECTION_DIM = 32
IMAGE_SIZE = 32


def write_tiny_safety_checker(
    folder: Path, *, concept_threshold: float = 1.0, special_care_threshold: float = 1.0, seed: int = 0
) -> Path:
    """Write `config.json`, `model.safetensors` and `preprocessor_config.json` into `folder`."""
    torch.manual_seed(seed)
    config = CLIPConfig(
        # The text tower is never built by the checker, but CLIPConfig always describes one.
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": 4,
        },
        projection_dim=PROJECTION_DIM,
    )
    model = StableDiffusionSafetyChecker(config)
    with torch.no_grad():
        model.concept_embeds.copy_(torch.randn(17, PROJECTION_DIM))
        model.special_care_embeds.copy_(torch.randn(3, PROJECTION_DIM))
        model.concept_embeds_weights.fill_(concept_threshold)
        model.special_care_embeds_weights.fill_(special_care_threshold)
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    ).save_pretrained(folder)
    return folder

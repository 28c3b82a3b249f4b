"""The image safety check every finished portrait passes before anyone sees it.

The classifier is diffusers' `StableDiffusionSafetyChecker` (production: the hub's
`CompVis/stable-diffusion-safety-checker`, a CLIP ViT-L/14 image encoder plus 17 "concept" and 3
"special care" embeddings with one threshold each) and its `CLIPImageProcessor`. It is the checker
every Stable Diffusion pipeline shipped with, it runs in ~10 ms per image on a GPU, and its weights
come as safetensors. Tests load a tiny random one from the same layout (`mmpp.inference.testing.tiny_safety`).

The scores are computed here from the model's own tensors with diffusers' arithmetic rather than
through its `forward`, which blacks images out and reports only one yes/no: the bot needs the
"special care" verdict apart from the nudity one to relax the check in age-restricted channels.

Two levels:
- ``strict`` (the default, DMs, and every channel unless its server's admin opts in): flagged when
  any concept scores above its threshold (thresholds drop by 0.01 when a special-care concept
  matches, as in diffusers).
- ``relaxed`` (a channel Discord marks NSFW, on a server whose admin turned that on): nudity alone
  passes, but an image that matches a nudity concept *and* a special-care concept (the ones the
  checker's authors use for pictures that may show children) is still flagged.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker, cosine_distance
from PIL import Image
from transformers import CLIPImageProcessor

# The level a request asks for and the refusal live with the request types, where no torch is needed.
from mmpp.inference.generation import ImageFiltered as ImageFiltered
from mmpp.inference.generation import SafetyLevel as SafetyLevel
from mmpp.inference.loader import ModelUnavailable, _local_or_hub
from mmpp.logs import log_event

log = logging.getLogger(__name__)

PRODUCTION_CHECKER = "CompVis/stable-diffusion-safety-checker"
# diffusers lowers every concept threshold by this much once a special-care concept matched.
SPECIAL_CARE_ADJUSTMENT = 0.01


@dataclass(frozen=True)
class SafetyVerdict:
    """One image's result. `nsfw`: a concept scored over its threshold; `special_care`: a
    special-care concept did. `margin` is the highest concept score (over 0 means over a threshold)."""

    flagged: bool
    nsfw: bool
    special_care: bool
    margin: float


class SafetyChecker:
    """Loaded once per engine; `check` is blocking and runs on the GPU worker's thread."""

    def __init__(self, model: StableDiffusionSafetyChecker, processor: CLIPImageProcessor, source: str) -> None:
        self.model = model.eval()
        self.processor = processor
        self.source = source
        # A memory plan that keeps the checker in host memory swaps in its onload context (inference/offload.py).
        self.onload: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext

    @classmethod
    def load(cls, source: str, device: torch.device, dtype: torch.dtype) -> SafetyChecker:
        """The same calls for a hub id and for a local folder (the tiny one in tests)."""
        started = time.perf_counter()
        where = _local_or_hub(source)
        try:
            # safetensors only: a pickled checkpoint could run code while it loads.
            model = StableDiffusionSafetyChecker.from_pretrained(where, dtype=dtype, use_safetensors=True)
            processor = CLIPImageProcessor.from_pretrained(where)
        except (OSError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelUnavailable(
                f"Could not load the safety checker {source}: {first} (SAFETY_CHECKER=none turns the check off)."
            ) from exc
        model.to(device)
        log_event(
            log, logging.INFO, "safety checker loaded", source=source, seconds=round(time.perf_counter() - started, 2)
        )
        return cls(model, processor, source)

    @torch.no_grad()
    def check(self, images: Sequence[Image.Image], levels: Sequence[SafetyLevel]) -> list[SafetyVerdict]:
        """One verdict per image, in order; one batched forward pass."""
        if len(images) != len(levels):
            raise ValueError("one safety level per image")
        if not images:
            return []
        with self.onload():
            return self._check(images, levels)

    def _check(self, images: Sequence[Image.Image], levels: Sequence[SafetyLevel]) -> list[SafetyVerdict]:
        model = self.model
        pixels = self.processor(images=list(images), return_tensors="pt").pixel_values
        pixels = pixels.to(device=model.device, dtype=model.dtype)
        pooled = model.vision_model(pixels)[1]
        embeds = model.visual_projection(pooled)
        # Scores in float32 whatever the model's dtype, as diffusers does.
        special_scores = (
            cosine_distance(embeds, model.special_care_embeds).float() - model.special_care_embeds_weights.float()
        )
        special = (special_scores > 0).any(dim=1)
        concept_scores = (
            cosine_distance(embeds, model.concept_embeds).float()
            - model.concept_embeds_weights.float()
            + special.unsqueeze(1) * SPECIAL_CARE_ADJUSTMENT
        )
        nsfw = (concept_scores > 0).any(dim=1)
        margins = concept_scores.max(dim=1).values
        verdicts = []
        for index, level in enumerate(levels):
            is_nsfw, is_special = bool(nsfw[index]), bool(special[index])
            flagged = is_nsfw if level == "strict" else is_nsfw and is_special
            verdicts.append(SafetyVerdict(flagged, is_nsfw, is_special, round(float(margins[index]), 4)))
        return verdicts


def load_safety_checker(source: str | None, device: torch.device, dtype: torch.dtype) -> SafetyChecker | None:
    """The checker from settings (`SAFETY_CHECKER`); None when the operator turned it off, said loudly."""
    if source is None:
        log_event(
            log, logging.WARNING, "SAFETY CHECK OFF",
            detail="SAFETY_CHECKER=none: finished portraits are posted without an image safety check. "
            "Do not run a public bot like this.",
        )
        return None
    return SafetyChecker.load(source, device, dtype)

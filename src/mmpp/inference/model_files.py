"""What is known of the models without loading a weight: where each one is, the styles, the size the
workers draw at (read from the models' own config files) and the upload limits the settings set.

No torch, diffusers or transformers here: a bot whose workers draw (`QUEUE_BACKEND=redis` without
`DEVICES`) reads all it needs of the models through this module and never loads the ML stack.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmpp.errors import UserFacingError
from mmpp.inference.preprocess import ImageLimits
from mmpp.inference.styles import StyleCatalog
from mmpp.settings import Settings


class ModelUnavailable(UserFacingError):
    code = "model_unavailable"


def local_or_hub(source: str) -> str:
    """A local folder must exist; anything else is a hub id (which offline mode may refuse)."""
    if source.startswith((".", "/", "~")) and not Path(source).expanduser().exists():
        raise ModelUnavailable(f"Model folder {source} does not exist. Check the path in bot.env.")
    return str(Path(source).expanduser()) if Path(source).expanduser().exists() else source


def read_config(source: str, subfolder: str | None = None) -> dict[str, Any]:
    """A model's `config.json`, from its folder or the hub cache, as diffusers' `load_config` finds it."""
    where = local_or_hub(source)
    try:
        if Path(where).is_dir():
            path = Path(where, subfolder or "", "config.json")
        else:
            from huggingface_hub import hf_hub_download  # the hub client only for a hub id

            path = Path(hf_hub_download(where, "config.json", subfolder=subfolder))
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except Exception as exc:  # a missing file, the hub client's errors and bad JSON alike
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        named = f"{source}/{subfolder}" if subfolder else source
        raise ModelUnavailable(f"Cannot read the config of {named}: {first}") from None


def model_resolution(settings: Settings) -> int:
    """What `Engine.resolution` will be on a worker: the UNet's sample size times the VAE's scale."""
    sources = settings.sources
    unet = read_config(sources.base_model, "unet")
    vae = read_config(sources.vae) if sources.vae else read_config(sources.base_model, "vae")
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


def image_limits(settings: Settings) -> ImageLimits:
    return ImageLimits(
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_image_pixels,
        min_side=settings.min_image_side,
        min_face_px=settings.min_face_px,
    )


def load_catalog(settings: Settings) -> StyleCatalog:
    if settings.model_dir is not None and not settings.model_dir.is_dir():
        raise ModelUnavailable(
            f"Model folder {settings.model_dir} does not exist. "
            "Make one with `mmpp make-tiny-model DIR`, or fix MODEL_DIR."
        )
    catalog = StyleCatalog.load(settings.sources.styles_dir, builtin=settings.builtin_styles)
    if not catalog.styles:
        problems = "; ".join(catalog.errors) or "no style folders with a style.json"
        raise ModelUnavailable(
            f"No usable style in {settings.sources.styles_dir} ({problems}). "
            "Train one with `mmpp train` or bring a LoRA with `mmpp style import`."
        )
    return catalog

"""The bot's side of the models when it runs no engine of its own: the style catalog, and the face
preparation at the size the workers draw (read from the model's configs, not its weights).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from mmpp.inference.conditioning import PreparedFace, prepare
from mmpp.inference.loader import _local_or_hub, image_limits, load_catalog
from mmpp.inference.preprocess import LocatedFace, locate_face
from mmpp.inference.styles import StyleCatalog
from mmpp.settings import Settings


def model_resolution(settings: Settings) -> int:
    """What `Engine.resolution` will be on a worker: the UNet's sample size times the VAE's scale."""
    sources = settings.sources
    unet = UNet2DConditionModel.load_config(_local_or_hub(sources.base_model), subfolder="unet")
    if sources.vae:
        vae = AutoencoderKL.load_config(_local_or_hub(sources.vae))
    else:
        vae = AutoencoderKL.load_config(_local_or_hub(sources.base_model), subfolder="vae")
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


class EngineFront:
    """The queue's `FacePreparer` where the bot draws nothing itself (QUEUE_BACKEND=redis): the
    style catalog, and faces prepared at the workers' drawing size."""

    device = torch.device("cpu")  # where faces are prepared; the drawing happens on the workers

    def __init__(self, catalog: StyleCatalog, resolution: int, settings: Settings) -> None:
        self.catalog = catalog
        self.resolution = resolution
        self.limits = image_limits(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineFront:
        return cls(load_catalog(settings), model_resolution(settings), settings)

    def prepare(self, data: bytes | LocatedFace) -> PreparedFace:
        located = data if isinstance(data, LocatedFace) else locate_face(data, self.limits)
        return prepare(located, self.resolution)

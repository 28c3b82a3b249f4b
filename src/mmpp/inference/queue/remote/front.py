"""The bot's side of the models when it runs no engine of its own: the style catalog, and the face
preparation at the size the workers draw (read from the model's config files, not its weights). No
torch, diffusers or transformers: a bot that draws nothing never loads them.
"""

from __future__ import annotations

from mmpp.inference.conditioning import PreparedFace, prepare
from mmpp.inference.model_files import image_limits, load_catalog, model_resolution
from mmpp.inference.preprocess import LocatedFace, locate_face
from mmpp.inference.styles import StyleCatalog
from mmpp.settings import Settings

# `model_resolution` is also what a worker states in its catalog fingerprint, so both sides agree.
__all__ = ["EngineFront", "model_resolution"]


class EngineFront:
    """The queue's `FacePreparer` where the bot draws nothing itself (QUEUE_BACKEND=redis): the
    style catalog, and faces prepared at the workers' drawing size."""

    # Where faces are prepared; the drawing happens on the workers. A name, not a `torch.device`: the
    # bot that holds a front never imports torch (it is only ever printed).
    device = "cpu"

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

"""Where each model the engine loads comes from (`ModelSources`): a hub id or a local folder per part.

`Settings.sources` builds one from the settings (or from `MODEL_DIR`); training, the model download and
the benchmarks build one from a model folder directly. Nothing here reads settings, so the loaders
need not import them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSources:
    """Where each model comes from: a hub id or a local folder, plus the file names inside it.

    Kept apart from `Settings` so a `--model-dir` can swap every source at once.
    """

    base_model: str
    vae: str | None
    controlnet: str
    ip_adapter: str
    ip_adapter_subfolder: str
    ip_adapter_weight_name: str
    image_encoder: str
    image_encoder_subfolder: str
    styles_dir: Path
    # None: no image safety check (SAFETY_CHECKER=none).
    safety_checker: str | None

    @classmethod
    def from_model_dir(cls, model_dir: Path, *, vae: bool = True) -> ModelSources:
        """The layout that `mmpp make-tiny-model` writes (and any folder laid out the same way).

        It mirrors the production sources: `vae/` stands for the fp16-fix VAE repo, `ip-adapter/` for
        h94/IP-Adapter (weights in `sdxl_models/`, the encoder in `models/image_encoder/`). The Plus-face
        weights are used when present, else the plain ones; `vae=False` is `VAE=none`.
        """
        model_dir = Path(model_dir)
        ip_adapter = model_dir / "ip-adapter"
        weights = sorted(p.name for p in (ip_adapter / "sdxl_models").glob("ip-adapter*_sdxl_vit-*.safetensors"))
        plus = [name for name in weights if name.startswith("ip-adapter-plus-face")]
        return cls(
            base_model=str(model_dir / "sdxl"),
            vae=str(model_dir / "vae") if vae else None,
            controlnet=str(model_dir / "controlnet"),
            ip_adapter=str(ip_adapter),
            ip_adapter_subfolder="sdxl_models",
            ip_adapter_weight_name=(plus or weights or ["ip-adapter-plus-face_sdxl_vit-tiny.safetensors"])[0],
            image_encoder=str(ip_adapter),
            image_encoder_subfolder="models/image_encoder",
            styles_dir=model_dir / "styles",
            safety_checker=str(model_dir / "safety-checker"),
        )

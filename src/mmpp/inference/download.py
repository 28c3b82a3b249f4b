"""`mmpp models download`: fetch every hub model the settings name, before the first start or by it.

SDXL, the VAE, the ControlNet, the IP-Adapter and its image encoder, the safety checker, and the hub
LoRAs that style folders name.

Only the files the loader reads come down (safetensors weights, configs, tokenizers), not the other
formats the hub repos also hold; the total size is shown first, then a progress bar. With
`HF_HUB_OFFLINE=1` nothing is fetched and a missing file is named in one line. Local folders (a
`MODEL_DIR`, or a source that is a path) are used as they are.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmpp.errors import UserFacingError
from mmpp.logs import log_event
from mmpp.model_sources import ModelSources

if TYPE_CHECKING:
    from mmpp.inference.styles import StyleCatalog

log = logging.getLogger(__name__)

WEIGHTS = "diffusion_pytorch_model.safetensors"


class ModelsMissing(UserFacingError):
    code = "model_unavailable"


@dataclass(frozen=True)
class HubNeed:
    """The files one setting needs from one hub repo: glob patterns to fetch, and the files that must be
    there afterwards (checked without the network)."""

    setting: str
    repo: str
    patterns: tuple[str, ...]
    required: tuple[str, ...]


def is_hub_id(source: str) -> bool:
    return not source.startswith((".", "/", "~")) and not Path(source).expanduser().exists()


def _sub(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def hub_needs(sources: ModelSources) -> list[HubNeed]:
    """What `mmpp.inference.loader.load_pipeline` will read from the hub for these sources."""
    needs: list[HubNeed] = []
    if is_hub_id(sources.base_model):
        parts = ["text_encoder", "text_encoder_2", "unet"] + ([] if sources.vae else ["vae"])
        weights = {"text_encoder": "model.safetensors", "text_encoder_2": "model.safetensors"}
        required = ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json",
                    "tokenizer_2/vocab.json"]
        required += [f"{part}/{weights.get(part, WEIGHTS)}" for part in parts]
        patterns = ["model_index.json", "scheduler/*.json", "tokenizer/*", "tokenizer_2/*"]
        patterns += [f"{part}/config.json" for part in parts] + required[4:]
        needs.append(HubNeed("BASE_MODEL", sources.base_model, tuple(patterns), tuple(required)))
    for setting, source in (("VAE", sources.vae), ("CONTROLNET", sources.controlnet)):
        if source and is_hub_id(source):
            needs.append(HubNeed(setting, source, ("config.json", WEIGHTS), ("config.json", WEIGHTS)))
    if is_hub_id(sources.ip_adapter):
        weight = _sub(sources.ip_adapter_subfolder, sources.ip_adapter_weight_name)
        needs.append(HubNeed("IP_ADAPTER", sources.ip_adapter, (weight,), (weight,)))
    if is_hub_id(sources.image_encoder):
        files = tuple(_sub(sources.image_encoder_subfolder, f) for f in ("config.json", "model.safetensors"))
        needs.append(HubNeed("IMAGE_ENCODER", sources.image_encoder, files, files))
    if sources.safety_checker and is_hub_id(sources.safety_checker):
        files = ("config.json", "model.safetensors", "preprocessor_config.json")
        needs.append(HubNeed("SAFETY_CHECKER", sources.safety_checker, files, files))
    return _merge(needs)


def style_needs(catalog: StyleCatalog) -> list[HubNeed]:
    """The hub LoRAs that style folders name (`lora.source` a hub id); local ones need nothing."""
    needs = []
    for style in catalog.styles.values():
        lora = style.definition.lora
        if lora is not None and style.lora_path == lora.source and is_hub_id(lora.source):
            weight = lora.weight_name or "pytorch_lora_weights.safetensors"  # diffusers' default name
            needs.append(HubNeed(f"style {style.name}", lora.source, (weight,), (weight,)))
    return needs


def _merge(needs: list[HubNeed]) -> list[HubNeed]:
    """One entry per repo (h94/IP-Adapter holds both the IP-Adapter and its image encoder)."""
    merged: dict[str, HubNeed] = {}
    for need in needs:
        if need.repo in merged:
            old = merged[need.repo]
            need = HubNeed(f"{old.setting}, {need.setting}", need.repo, old.patterns + need.patterns,
                           old.required + need.required)
        merged[need.repo] = need
    return list(merged.values())


def missing_files(needs: list[HubNeed]) -> dict[HubNeed, list[str]]:
    """The required files not yet in the local hub cache, per need; asks no server."""
    from huggingface_hub import try_to_load_from_cache

    missing: dict[HubNeed, list[str]] = {}
    for need in needs:
        absent = [f for f in need.required if not isinstance(try_to_load_from_cache(need.repo, f), str)]
        if absent:
            missing[need] = absent
    return missing


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def describe_missing(missing: dict[HubNeed, list[str]]) -> str:
    return "; ".join(f"{need.setting}={need.repo} ({', '.join(files)})" for need, files in missing.items())


def offline_error(missing: dict[HubNeed, list[str]]) -> ModelsMissing:
    return ModelsMissing(
        f"HF_HUB_OFFLINE=1 and these model files are not downloaded: {describe_missing(missing)}. "
        "Run `mmpp models download` where the hub is reachable, or unset HF_HUB_OFFLINE."
    )


def ensure_models(sources: ModelSources) -> None:
    """Fetch whatever the loader will need and is not here yet; a no-op (and no network) when all is."""
    missing = missing_files(hub_needs(sources))
    if not missing:
        return
    if offline():
        raise offline_error(missing)
    download(list(missing))


def _gigabytes(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def model_cache() -> Path:
    """The hub cache the models go to and load from: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    from huggingface_hub import constants

    # Read now, not at import: tests and `mmpp` subprocesses set HF_HOME before calling.
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if cache:
        return Path(cache).expanduser()
    home = os.environ.get("HF_HOME")
    return Path(home).expanduser() / "hub" if home else Path(constants.HF_HUB_CACHE).expanduser()


def free_bytes(folder: Path) -> int:
    """Free space on the disk that holds `folder` (or would: the nearest folder above it that exists)."""
    probe = folder.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def download(needs: list[HubNeed]) -> None:
    """Show the total, then fetch each repo's files with a byte progress bar (tqdm, on stderr).

    Plain tqdm rather than the hub's own bars: `quiet_libraries` switches those off for the model load.
    """
    from huggingface_hub import snapshot_download
    from tqdm import tqdm

    started = time.perf_counter()
    cache = model_cache()
    # Before anything is asked of the hub: where 15 GB will land is the first thing an operator checks.
    print(f"mmpp: model cache {cache} ({_gigabytes(free_bytes(cache))} free on its disk; set HF_HOME to move it)",
          file=sys.stderr, flush=True)
    try:
        plans = {need: snapshot_download(need.repo, allow_patterns=list(need.patterns), dry_run=True)
                 for need in needs}
        fetch = sum(f.file_size or 0 for files in plans.values() for f in files if f.will_download)
        have = sum(f.file_size or 0 for files in plans.values() for f in files if not f.will_download)
        count = sum(1 for files in plans.values() for f in files if f.will_download)
        free = free_bytes(cache)
        print(f"mmpp: downloading {count} model files, {_gigabytes(fetch)} ({_gigabytes(have)} already here), "
              f"needs {_gigabytes(fetch)} of the {_gigabytes(free)} free at {cache}", file=sys.stderr, flush=True)
        if fetch > free:
            raise ModelsMissing(f"Not enough disk for the models: {_gigabytes(fetch)} needed, {_gigabytes(free)} "
                                f"free at {cache}. Free some space, or set HF_HOME to a larger disk.")
        log_event(log, logging.INFO, "models downloading", files=count, bytes=fetch,
                  repos=",".join(n.repo for n in needs))
        for need in needs:
            snapshot_download(need.repo, allow_patterns=list(need.patterns), tqdm_class=tqdm)
    except ModelsMissing:
        raise
    except Exception as exc:  # the hub client raises its own, httpx's and OS errors alike
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        repos = ", ".join(f"{n.setting}={n.repo}" for n in needs)
        raise ModelsMissing(f"Could not download {repos} from the Hugging Face hub: {first}") from None
    still = missing_files(needs)
    if still:
        raise ModelsMissing(f"The download finished without these files: {describe_missing(still)}.")
    log_event(log, logging.INFO, "models downloaded", seconds=round(time.perf_counter() - started, 1))


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="fetch the models the settings name",
                                   description="Manage the models the bot loads.")
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    fetch = actions.add_parser(
        "download", help="download every model the settings name (the bot's first start does it too)",
        description="Download SDXL, the VAE, the ControlNet, the IP-Adapter and its image encoder as bot.env "
        "names them, only the files the bot reads, with the total size first and a progress bar.",
    )
    fetch.add_argument("--model-dir", type=Path, default=None, help="a local model folder: nothing to fetch")
    fetch.set_defaults(func=run_download)


def run_download(args: argparse.Namespace) -> int:
    from mmpp.inference.styles import StyleCatalog
    from mmpp.settings import load_settings

    settings = load_settings(args.env_file, model_dir=args.model_dir)
    catalog = StyleCatalog.load(settings.sources.styles_dir, builtin=settings.builtin_styles)
    needs = _merge(hub_needs(settings.sources) + style_needs(catalog))
    if not needs:
        print("mmpp: every model source is a local folder; nothing to download.")
        return 0
    missing = missing_files(needs)
    if missing and offline():
        raise offline_error(missing)
    if missing:
        download(list(missing))
    print(f"mmpp: models ready: {', '.join(f'{n.setting}={n.repo}' for n in needs)}")
    return 0

"""`mmpp models download` and the first start's own fetch, where the hub cannot be reached: offline with
files missing says which in one line; a local folder needs nothing; hub ids are served from the local
hub cache through the production loading calls."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

H94 = "h94/IP-Adapter"
COMMIT = "0" * 40


def mmpp(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DISCORD_", "MODEL_DIR", "BASE_MODEL", "VAE", "CONTROLNET", "IP_ADAPTER",
                                  "IMAGE_ENCODER", "STYLES_DIR", "SAFETY_CHECKER", "HF_"))}
    return subprocess.run([sys.executable, "-m", "mmpp.cli", *args], cwd=cwd, env={**clean, **env},
                          capture_output=True, text=True, timeout=300)


def test_offline_with_nothing_downloaded_names_every_missing_model_in_one_line(tmp_path: Path) -> None:
    done = mmpp("models", "download", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("mmpp: HF_HUB_OFFLINE=1 and these model files are not downloaded: ")
    for named in ("BASE_MODEL=stabilityai/stable-diffusion-xl-base-1.0 (model_index.json",
                  "unet/diffusion_pytorch_model.safetensors", "VAE=madebyollin/sdxl-vae-fp16-fix",
                  "CONTROLNET=diffusers/controlnet-canny-sdxl-1.0",
                  "IP_ADAPTER, IMAGE_ENCODER=h94/IP-Adapter (sdxl_models/ip-adapter-plus-face_sdxl_vit-h.safetensors",
                  "models/image_encoder/model.safetensors",
                  "SAFETY_CHECKER=CompVis/stable-diffusion-safety-checker (config.json, model.safetensors"):
        assert named in line
    assert line.endswith("Run `mmpp models download` where the hub is reachable, or unset HF_HUB_OFFLINE.")
    # The base model's own VAE is not fetched while VAE= names another one.
    assert "vae/diffusion_pytorch_model.safetensors" not in line


def test_an_unreachable_hub_is_one_line(tmp_path: Path) -> None:
    done = mmpp("models", "download", cwd=tmp_path,
                env={"HF_ENDPOINT": "http://127.0.0.1:1", "HF_HOME": str(tmp_path / "hf")})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    cache_line, line = done.stderr.strip().splitlines()
    # Where the files would go, and the room there, before the hub is asked anything.
    assert cache_line.startswith(f"mmpp: model cache {tmp_path / 'hf' / 'hub'} (")
    assert re.search(r"\(\d+\.\d\d GB free on its disk; set HF_HOME to move it\)$", cache_line), cache_line
    assert line.startswith("mmpp: Could not download BASE_MODEL=stabilityai/stable-diffusion-xl-base-1.0, VAE=")
    assert ("IP_ADAPTER, IMAGE_ENCODER=h94/IP-Adapter, SAFETY_CHECKER=CompVis/stable-diffusion-safety-checker "
            "from the Hugging Face hub: ") in line


def test_a_local_model_folder_needs_no_download(tmp_path: Path, tiny_model_dir: Path) -> None:
    done = mmpp("models", "download", "--model-dir", str(tiny_model_dir), cwd=tmp_path,
                env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "mmpp: every model source is a local folder; nothing to download."


def test_a_styles_hub_lora_is_fetched_too(tmp_path: Path) -> None:
    style = tmp_path / "model" / "styles" / "hub-style"
    style.mkdir(parents=True)
    (style / "style.json").write_text(json.dumps(
        {"name": "hub-style", "lora": {"source": "someone/sdxl-ink-lora", "weight_name": "ink.safetensors"}}))
    done = mmpp("models", "download", "--model-dir", str(tmp_path / "model"), cwd=tmp_path,
                env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert done.returncode == 1
    assert "not downloaded: style hub-style=someone/sdxl-ink-lora (ink.safetensors)." in done.stderr


@pytest.fixture
def cached_h94(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """The tiny Plus IP-Adapter and encoder under h94/IP-Adapter's production names, in a hub cache laid out
    as huggingface_hub writes it (refs/main → snapshots/COMMIT/...)."""
    repo = tmp_path / "hf" / "hub" / "models--h94--IP-Adapter"
    snapshot = repo / "snapshots" / COMMIT
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (snapshot / "sdxl_models").mkdir(parents=True)
    shutil.copy(tiny_model_dir / "ip-adapter" / "sdxl_models" / "ip-adapter-plus-face_sdxl_vit-tiny.safetensors",
                snapshot / "sdxl_models" / "ip-adapter-plus-face_sdxl_vit-h.safetensors")
    shutil.copytree(tiny_model_dir / "ip-adapter" / "models", snapshot / "models")
    return snapshot


def test_hub_sources_load_from_the_hub_cache_offline_and_a_missing_file_is_named(
    tmp_path: Path, tiny_model_dir: Path, cached_h94: Path, selfie_bytes: bytes
) -> None:
    # The production IP-Adapter settings (the bot.env.example defaults), the rest from the tiny folder.
    (tmp_path / "bot.env").write_text(
        f"BASE_MODEL={tiny_model_dir / 'sdxl'}\nVAE={tiny_model_dir / 'vae'}\n"
        f"CONTROLNET={tiny_model_dir / 'controlnet'}\nSTYLES_DIR={tiny_model_dir / 'styles'}\nDEVICE=cpu\n"
        f"SAFETY_CHECKER={tiny_model_dir / 'safety-checker'}\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    ready = mmpp("models", "download", cwd=tmp_path, env=env)
    assert ready.returncode == 0, ready.stderr
    assert ready.stdout.strip() == "mmpp: models ready: IP_ADAPTER, IMAGE_ENCODER=h94/IP-Adapter"

    (tmp_path / "me.jpg").write_bytes(selfie_bytes)
    made = mmpp("generate", "me.jpg", "--style", "tiny-style", "-o", "out.png", "--steps", "2", "--seed", "1",
                cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "out.png").read_bytes().startswith(b"\x89PNG")

    (cached_h94 / "models" / "image_encoder" / "model.safetensors").unlink()
    missing = mmpp("models", "download", cwd=tmp_path, env=env)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "mmpp: HF_HUB_OFFLINE=1 and these model files are not downloaded: IP_ADAPTER, IMAGE_ENCODER=h94/IP-Adapter "
        "(models/image_encoder/model.safetensors). Run `mmpp models download` where the hub is reachable, "
        "or unset HF_HUB_OFFLINE."
    )

"""The CPU image, built from the repository's Dockerfile on a locally made Debian base, runs the app:
its version, the tiny model, and a portrait drawn from a real photo, as the unprivileged user."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

import mmpp
from tests.containers.conftest import docker

SAMPLE_FACE = Path(mmpp.__file__).parent / "bot" / "assets" / "sample_face.jpg"


def run(image: str, *args: str, volume: Path | None = None) -> str:
    mount = ["-v", f"{volume}:/work"] if volume else []
    # HF_HUB_OFFLINE: nothing may come from the Hugging Face hub; the tiny model is all there is.
    answer = docker("run", "--rm", "--network", "none", "-e", "HF_HUB_OFFLINE=1", *mount, image, *args,
                    timeout=900, check=False)
    assert answer.returncode == 0, f"mmpp {' '.join(args)}: {answer.stdout[-2000:]}{answer.stderr[-2000:]}"
    return answer.stdout + answer.stderr


def test_the_image_says_its_version_and_runs_unprivileged(cpu_image: str) -> None:
    assert run(cpu_image, "--version").strip() == f"mmpp {mmpp.__version__}"
    user = docker("image", "inspect", "--format", "{{.Config.User}} {{json .Config.Volumes}}", cpu_image).stdout
    assert user.startswith("mmpp ")
    assert "/var/lib/mmpp/models" in user and "/var/lib/mmpp/data" in user


def test_the_image_makes_the_tiny_model_and_draws_a_portrait(cpu_image: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)  # the image's user (uid 10001) writes here
    shutil.copy(SAMPLE_FACE, work / "face.jpg")
    run(cpu_image, "make-tiny-model", "/work/tiny", volume=work)
    assert (work / "tiny" / "styles").is_dir()
    run(cpu_image, "generate", "/work/face.jpg", "--model-dir", "/work/tiny", "--style", "tiny-style",
        "--steps", "2", "--seed", "7", "--device", "cpu", "-o", "/work/portrait.png", volume=work)
    with Image.open(work / "portrait.png") as portrait:
        assert portrait.format == "PNG" and min(portrait.size) >= 64

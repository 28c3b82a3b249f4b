"""`mmpp generate` and `mmpp make-tiny-model` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mmpp.cli import main


def run_mmpp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmpp.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_generate_writes_a_png(tiny_model_dir: Path, selfie_bytes: bytes, tmp_path: Path) -> None:
    selfie = tmp_path / "me.jpg"
    selfie.write_bytes(selfie_bytes)
    out = tmp_path / "out" / "portrait.png"
    done = run_mmpp("generate", str(selfie), "--style", "tiny-style", "--output", str(out), "--seed", "4",
                    "--steps", "3", "--model-dir", str(tiny_model_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and "seed 4" in done.stdout
    assert "unlinkable guard: passed" in done.stdout  # the bot's guard measured it
    assert "3/3" in done.stderr  # the progress bar reached the end
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (64, 64)


def test_bad_input_is_one_friendly_line_and_no_traceback(tiny_model_dir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "selfie.jpg"
    fake.write_text("this is a text file\n")
    done = run_mmpp("generate", str(fake), "--style", "tiny-style", "--output", str(tmp_path / "o.png"),
                    "--model-dir", str(tiny_model_dir), cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "mmpp: That file isn't a picture I can read. Please attach a photo (JPEG, PNG, WebP or GIF)."
    )
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--style", "nope"], "There is no style called 'nope'. Styles available: tiny-style."),
        (["--steps", "0"], "--steps must be at least 1."),
    ],
)
def test_wrong_options_are_named(
    argv: list[str], message: str, tiny_model_dir: Path, selfie_bytes: bytes, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    selfie = tmp_path / "me.jpg"
    selfie.write_bytes(selfie_bytes)
    args = ["generate", str(selfie), "--output", str(tmp_path / "o.png"), "--model-dir", str(tiny_model_dir)]
    if "--style" not in argv:
        args += ["--style", "tiny-style"]
    assert main([*args, *argv]) == 1
    assert capsys.readouterr().err.strip() == f"mmpp: {message}"


def test_a_device_the_machine_lacks_is_named(
    tiny_model_dir: Path, selfie_bytes: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from mmpp.inference.device import present_devices

    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, on any machine
    selfie = tmp_path / "me.jpg"
    selfie.write_bytes(selfie_bytes)
    args = ["generate", str(selfie), "--style", "tiny-style", "-o", str(tmp_path / "o.png"),
            "--model-dir", str(tiny_model_dir), "--device", missing]
    assert main(args) == 1
    assert capsys.readouterr().err == (
        f"mmpp: DEVICE={missing}, but this machine has no such device; it has {', '.join(present_devices())} "
        "(or auto).\n"
    )
    assert not (tmp_path / "o.png").exists()


def test_missing_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(tmp_path / "none.jpg"), "--style", "x", "-o", "o.png"]) == 1
    assert "Cannot read" in capsys.readouterr().err
    (tmp_path / "me.jpg").write_bytes(b"x")
    assert main(["generate", str(tmp_path / "me.jpg"), "--style", "x", "-o", "o.png",
                 "--model-dir", str(tmp_path / "no-model")]) == 1
    assert "Model folder" in capsys.readouterr().err


def test_make_tiny_model_writes_the_standard_layout(tmp_path: Path) -> None:
    assert main(["make-tiny-model", str(tmp_path / "m")]) == 0
    for part in ("sdxl/model_index.json", "sdxl/unet/config.json", "sdxl/tokenizer/tokenizer.json",
                 "vae/config.json", "controlnet/config.json",
                 "ip-adapter/sdxl_models/ip-adapter-plus-face_sdxl_vit-tiny.safetensors",
                 "ip-adapter/models/image_encoder/config.json", "styles/tiny-style/style.json",
                 "styles/tiny-style/lora.safetensors"):
        assert (tmp_path / "m" / part).is_file(), part


def test_inspect_writes_what_the_engine_would_get(astronaut: Image.Image, tmp_path: Path) -> None:
    selfie = tmp_path / "tilted.jpg"
    astronaut.rotate(20, expand=True, fillcolor=(120, 120, 110)).save(selfie, quality=92)
    out = tmp_path / "seen"
    done = run_mmpp("inspect", str(selfie), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    steps = [line.split(":")[0] for line in lines]
    assert steps[:-1] == ["photo", "face", "rotation", "square", "mask", "structure", "face crop"]
    assert lines[-1].startswith(f"wrote mask.png, control.png and face.png to {out}")
    turned = int(lines[2].split("turned ")[1].split(" degrees")[0])
    assert -25 <= turned <= -15  # she was tilted 20 degrees counter-clockwise
    with Image.open(out / "control.png") as control, Image.open(out / "mask.png") as mask, \
            Image.open(out / "face.png") as face:
        assert control.size == (1024, 1024) and control.mode == "L"
        assert mask.mode == "L" and mask.width == mask.height
        assert face.size == (224, 224) and face.mode == "RGB"


def test_inspect_says_why_a_photo_cannot_be_used(tmp_path: Path) -> None:
    from skimage import data as skdata

    photo = tmp_path / "cup.jpg"
    Image.fromarray(skdata.coffee()).save(photo)
    done = run_mmpp("inspect", str(photo), "--out", str(tmp_path / "seen"), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("mmpp: I couldn't find a face in that picture.")
    assert not (tmp_path / "seen").exists()


def test_generate_runs_the_unlinkable_guard_and_an_option_turns_it_off(
    tiny_model_dir: Path, selfie_bytes: bytes, astronaut: Image.Image, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Every portrait comes back as the selfie itself: the guard redraws it twice, then warns."""
    from dataclasses import replace

    from PIL import ImageOps

    from mmpp.inference.engine import Engine

    real = Engine.generate
    calls: list[int] = []
    mirrored = ImageOps.mirror(astronaut)

    def as_the_selfie(self, requests, on_step=None):  # type: ignore[no-untyped-def]
        calls.append(len(requests))
        return [replace(r, image=mirrored) for r in real(self, requests, on_step)]

    monkeypatch.setattr(Engine, "generate", as_the_selfie)
    selfie = tmp_path / "me.jpg"
    selfie.write_bytes(selfie_bytes)
    args = ["generate", str(selfie), "--style", "tiny-style", "-o", str(tmp_path / "o.png"), "--steps", "2",
            "--model-dir", str(tiny_model_dir)]
    assert main(args) == 0
    said = capsys.readouterr()
    assert calls == [1, 1, 1] and "unlinkable guard: linkable" in said.out
    assert "face matching could still link this portrait" in said.err
    assert main([*args, "--no-guard"]) == 0
    said = capsys.readouterr()
    assert calls == [1, 1, 1, 1] and "guard is off (--no-guard)" in said.err and "guard: off" in said.out

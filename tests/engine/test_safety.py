"""The image safety check: the tiny checker loads like the production one and refuses what it flags."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmpp.bot.words.errors import FILTERED
from mmpp.cli import main
from mmpp.inference.safety import ImageFiltered, SafetyChecker, load_safety_checker
from mmpp.inference.testing.tiny_safety import write_tiny_safety_checker
from mmpp.settings import load_settings

CPU = torch.device("cpu")


def noise(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (80, 80, 3), dtype=np.uint8))


def checker(folder: Path, **thresholds: float) -> SafetyChecker:
    return SafetyChecker.load(str(write_tiny_safety_checker(folder, **thresholds)), CPU, torch.float32)


def test_the_tiny_checker_is_laid_out_like_the_production_one(tiny_model_dir: Path) -> None:
    folder = tiny_model_dir / "safety-checker"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    verdicts = SafetyChecker.load(str(folder), CPU, torch.float32).check([noise(1), noise(2)], ["strict"] * 2)
    assert [v.flagged for v in verdicts] == [False, False]


def test_levels_nudity_passes_only_relaxed_and_special_care_never(tmp_path: Path) -> None:
    images = [noise(1), noise(2)]
    nudity = checker(tmp_path / "nudity", concept_threshold=-1.0)
    assert [v.flagged for v in nudity.check(images, ["strict", "relaxed"])] == [True, False]
    both = checker(tmp_path / "both", concept_threshold=-1.0, special_care_threshold=-1.0)
    assert [v.flagged for v in both.check(images, ["strict", "relaxed"])] == [True, True]
    assert all(v.nsfw and v.special_care and v.margin > 0 for v in both.check(images, ["strict", "relaxed"]))


def test_off_only_when_asked_and_then_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert load_settings(None).sources.safety_checker == "CompVis/stable-diffusion-safety-checker"
    assert load_settings(None, model_dir=tmp_path).sources.safety_checker == str(tmp_path / "safety-checker")
    assert load_settings(None, model_dir=tmp_path, safety_checker="none").sources.safety_checker is None
    with caplog.at_level(logging.WARNING):
        assert load_safety_checker(None, CPU, torch.float32) is None
    assert "SAFETY CHECK OFF" in caplog.text


def test_mmpp_generate_writes_nothing_when_the_check_flags(
    tiny_model_dir: Path, selfie_bytes: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    shutil.rmtree(model_dir / "safety-checker")
    write_tiny_safety_checker(model_dir / "safety-checker", concept_threshold=-1.0)
    selfie, out = tmp_path / "me.jpg", tmp_path / "portrait.png"
    selfie.write_bytes(selfie_bytes)

    code = main(["generate", str(selfie), "--style", "tiny-style", "--output", str(out), "--steps", "2",
                 "--model-dir", str(model_dir)])
    assert code == ImageFiltered().exit_code != 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"mmpp: {FILTERED}"
    assert not out.exists()

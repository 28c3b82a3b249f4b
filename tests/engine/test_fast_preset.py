"""The fast preset on the tiny model: a few-step LoRA stacked on the style's own, with its scheduler,
steps and guidance."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from diffusers import LCMScheduler, UNet2DConditionModel

from mmpp.inference.engine import Engine, GenerationRequest, StepProgress
from mmpp.inference.style_definition import FastPreset, LoraSource
from mmpp.inference.style_folder import StyleError, load_style, write_style
from mmpp.inference.testing.random_lora import write_lora_file
from mmpp.settings import load_settings

FAST_STEPS = 2


def add_fast_preset(model_dir: Path, style: str, *, seed: int) -> None:
    folder = model_dir / "styles" / style
    unet = UNet2DConditionModel.from_pretrained(model_dir / "sdxl" / "unet")
    write_lora_file(folder / "fast.safetensors", unet, rank=4, seed=seed)  # stands in for an LCM LoRA
    definition = load_style(folder).definition.model_copy(update={"fast": FastPreset(
        lora=LoraSource(source="fast.safetensors", scale=1.0), scheduler="lcm", steps=FAST_STEPS, guidance=1.0,
    )})
    write_style(folder, definition)


@pytest.fixture(scope="module")
def fast_engine(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    model_dir = tmp_path_factory.mktemp("fast") / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    add_fast_preset(model_dir, "tiny-style", seed=21)
    return Engine.from_settings(load_settings(None, model_dir=model_dir, device="cpu", dtype="float32"))


def draw(engine: Engine, selfie: bytes, **kwargs: object) -> tuple[np.ndarray, list[int], str]:
    totals: list[int] = []
    schedulers: list[str] = []

    def on_step(progress: StepProgress) -> None:
        totals.append(progress.total)
        schedulers.append(type(engine.pipe.scheduler).__name__)

    request = GenerationRequest(face=engine.prepare(selfie), style="tiny-style", seed=4, **kwargs)  # type: ignore[arg-type]
    result = engine.generate([request], on_step=on_step)[0]
    return np.asarray(result.image, dtype=np.int16), totals, schedulers[0]


def test_fast_preset_uses_its_steps_and_scheduler_and_changes_the_picture(
    fast_engine: Engine, selfie_bytes: bytes
) -> None:
    quality, quality_totals, quality_scheduler = draw(fast_engine, selfie_bytes, fast=False)
    fast, fast_totals, fast_scheduler = draw(fast_engine, selfie_bytes, fast=True)
    assert quality_totals == [4] * 4 and quality_scheduler != "LCMScheduler"  # the style's own: 4 steps
    assert fast_totals == [FAST_STEPS] * FAST_STEPS and fast_scheduler == LCMScheduler.__name__
    assert np.abs(quality - fast).mean() > 2


def test_fast_lora_stacks_on_the_style_lora(fast_engine: Engine, selfie_bytes: bytes) -> None:
    stacked, _, _ = draw(fast_engine, selfie_bytes, fast=True)
    assert len(fast_engine.pipe.unet.active_adapters()) == 2  # the style's and the fast one, both active
    fast_alone, _, _ = draw(fast_engine, selfie_bytes, fast=True, lora_scale=0.0)
    assert np.abs(stacked - fast_alone).max() > 3  # the style's LoRA still draws under the fast one
    again, _, _ = draw(fast_engine, selfie_bytes, fast=True)
    assert (again == stacked).all()


def test_fast_preset_setting_is_the_default_for_requests_that_do_not_say(
    fast_engine: Engine, selfie_bytes: bytes
) -> None:
    fast_engine.fast_preset = True
    try:
        _, totals, scheduler = draw(fast_engine, selfie_bytes)
    finally:
        fast_engine.fast_preset = False
    assert totals[0] == FAST_STEPS and scheduler == LCMScheduler.__name__


def test_a_missing_fast_lora_is_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "styles" / "tiny-style"
    shutil.copytree(tiny_model_dir / "styles" / "tiny-style", folder)
    definition = load_style(folder).definition.model_copy(
        update={"fast": FastPreset(lora=LoraSource(source="lightning.safetensors"))}
    )
    write_style(folder, definition)
    with pytest.raises(StyleError, match=r"field 'fast\.lora\.source'"):
        load_style(folder)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("../tiny-style-other/lora.safetensors", "must be a file inside the style folder"),
        ("fast.bin", "is not a .safetensors file"),
    ],
)
def test_a_fast_lora_from_a_stranger_stays_inside_its_folder_and_is_safetensors(
    source: str, message: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A style folder from a stranger: its fast preset must not reach other files or load pickles.
    folder = tmp_path / "styles" / "tiny-style"
    shutil.copytree(tiny_model_dir / "styles" / "tiny-style", folder)
    (tmp_path / "styles" / "tiny-style-other").mkdir()
    (tmp_path / "styles" / "tiny-style-other" / "lora.safetensors").write_bytes(b"x")
    (folder / "fast.bin").write_bytes(b"x")
    definition = load_style(folder).definition.model_copy(
        update={"fast": FastPreset(lora=LoraSource(source=source))}
    )
    write_style(folder, definition)
    with pytest.raises(StyleError, match=message):
        load_style(folder)

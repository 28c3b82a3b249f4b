"""A pickled LoRA is never loaded, on any path. A style whose source is a folder holding only a `.bin`
is refused when the style loads (tests/engine/test_style_safety.py); here the folder held a
`.safetensors` when the styles loaded and only a `.bin` when the LoRAs load (changed under a running
bot), so what refuses it is the check every LoRA load makes (`weights.lora_source`), naming its
style.json and the field, while the other styles load.

The `.bin` is a real, loadable copy of a tiny LoRA (`testing.tiny_model.pickled_copy`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mmpp.inference.compile import StyleSlot
from mmpp.inference.engine import Engine
from mmpp.inference.loader import load_catalog, load_pipeline
from mmpp.inference.speed import SpeedOptions
from mmpp.inference.style_definition import FastPreset, LoraSource
from mmpp.inference.style_folder import load_style, write_style
from mmpp.inference.styles import StyleCatalog
from mmpp.inference.testing.tiny_model import add_tiny_style, pickled_copy
from mmpp.settings import Settings, load_settings

BIN = "pytorch_lora_weights.bin"
SAFE = "pytorch_lora_weights.safetensors"
SPOILED = ("pickled-style/weights", "fast-pickled/fast")


@pytest.fixture
def pickled_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny model plus "pickled-style", whose LoRA is the folder `weights`, and "fast-pickled", a
    good style whose fast preset's LoRA is the folder `fast`; each folder holds the LoRA twice, as
    safetensors and as a pickle."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    styles = model_dir / "styles"
    folder = add_tiny_style(model_dir, "pickled-style", seed=31)
    definition = load_style(folder).definition
    pickled_copy(folder / "lora.safetensors", folder / "weights" / BIN)
    (folder / "lora.safetensors").rename(folder / "weights" / SAFE)
    write_style(folder, definition.model_copy(update={"lora": LoraSource(source="weights")}))

    folder = add_tiny_style(model_dir, "fast-pickled", seed=32)
    definition = load_style(folder).definition
    pickled_copy(folder / "lora.safetensors", folder / "fast" / BIN)
    shutil.copy(folder / "lora.safetensors", folder / "fast" / SAFE)
    write_style(folder, definition.model_copy(update={"fast": FastPreset(
        lora=LoraSource(source="fast"), scheduler="lcm", steps=2, guidance=1.0,
    )}))
    assert sorted(p.name for p in styles.iterdir()) >= ["fast-pickled", "pickled-style", "tiny-style"]
    return model_dir


def loaded_then_spoiled(model_dir: Path, **settings: object) -> tuple[Settings, StyleCatalog]:
    """The styles as loaded (both folders held safetensors), then the safetensors taken away."""
    chosen = load_settings(None, model_dir=model_dir, device="cpu", dtype="float32", **settings)
    catalog = load_catalog(chosen)
    assert {"pickled-style", "fast-pickled"} <= set(catalog.names())
    for folder in SPOILED:
        (model_dir / "styles" / folder / SAFE).unlink()
    return chosen, catalog


def assert_refused(catalog: StyleCatalog) -> None:
    assert "tiny-style" in catalog, "the other styles still load"
    for style, field in (("pickled-style", "lora.source"), ("fast-pickled", "fast.lora.source")):
        assert style not in catalog, f"{style}'s pickled LoRA was loaded"
        [reason] = [e for e in catalog.errors if f"{style}/style.json" in e]
        assert f"field '{field}'" in reason and "no .safetensors file" in reason and "\n" not in reason


def test_a_pickled_only_lora_folder_is_refused_on_the_default_and_fast_paths(pickled_dir: Path) -> None:
    settings, catalog = loaded_then_spoiled(pickled_dir)
    pipe = load_pipeline(settings.sources, torch.device("cpu"), torch.float32)
    Engine.assemble(pipe, catalog, SpeedOptions.from_settings(settings))
    assert_refused(catalog)


def test_a_pickled_only_lora_folder_is_refused_on_the_compiled_path(pickled_dir: Path) -> None:
    """COMPILE's own loading (one hotswap slot, `StyleSlot.load`), without the minutes compiling takes."""
    settings, catalog = loaded_then_spoiled(pickled_dir, compile="default")
    StyleSlot.load(load_pipeline(settings.sources, torch.device("cpu"), torch.float32), catalog)
    assert_refused(catalog)

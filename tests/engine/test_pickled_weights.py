"""A pickled LoRA is never loaded, on any path: a style whose source is a folder with only a `.bin`
in it is refused at load, naming its style.json and the field, while the other styles load.

The `.bin` is a real, loadable copy of a tiny LoRA (`testing.tiny_model.pickled_copy`): diffusers
would load it without `use_safetensors=True`, which is what these tests catch."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mmpp.inference.compile import StyleSlot
from mmpp.inference.engine import Engine
from mmpp.inference.loader import load_catalog, load_pipeline
from mmpp.inference.style_definition import FastPreset, LoraSource
from mmpp.inference.style_folder import load_style, write_style
from mmpp.inference.styles import StyleCatalog
from mmpp.inference.testing.tiny_model import add_tiny_style, pickled_copy
from mmpp.settings import load_settings

BIN = "pytorch_lora_weights.bin"


@pytest.fixture(scope="module")
def pickled_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model plus "pickled-style", whose LoRA is a folder holding only a `.bin`, and
    "fast-pickled", a good style whose fast preset's LoRA is such a folder."""
    model_dir = tmp_path_factory.mktemp("pickled") / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    styles = model_dir / "styles"
    folder = add_tiny_style(model_dir, "pickled-style", seed=31)
    pickled_copy(folder / "lora.safetensors", folder / "weights" / BIN)
    definition = load_style(folder).definition
    write_style(folder, definition.model_copy(update={"lora": LoraSource(source="weights")}))
    (folder / "lora.safetensors").unlink()

    folder = add_tiny_style(model_dir, "fast-pickled", seed=32)
    pickled_copy(folder / "lora.safetensors", folder / "fast" / BIN)
    definition = load_style(folder).definition
    write_style(folder, definition.model_copy(update={"fast": FastPreset(
        lora=LoraSource(source="fast"), scheduler="lcm", steps=2, guidance=1.0,
    )}))
    assert sorted(p.name for p in styles.iterdir()) >= ["fast-pickled", "pickled-style", "tiny-style"]
    return model_dir


def load(model_dir: Path, **settings: object) -> Engine:
    return Engine.from_settings(load_settings(None, model_dir=model_dir, device="cpu", dtype="float32", **settings))


def assert_refused(catalog: StyleCatalog) -> None:
    assert "tiny-style" in catalog, "the other styles still load"
    for style, field in (("pickled-style", "lora.source"), ("fast-pickled", "fast.lora.source")):
        assert style not in catalog, f"{style}'s pickled LoRA was loaded"
        [reason] = [e for e in catalog.errors if f"{style}/style.json" in e]
        assert f"field '{field}'" in reason and "no .safetensors file" in reason and "\n" not in reason


def test_a_pickled_only_lora_folder_is_refused_on_the_default_and_fast_paths(pickled_dir: Path) -> None:
    assert_refused(load(pickled_dir).catalog)


def test_a_pickled_only_lora_folder_is_refused_on_the_compiled_path(pickled_dir: Path) -> None:
    """COMPILE's own loading (one hotswap slot, `StyleSlot.load`), without the minutes compiling takes."""
    settings = load_settings(None, model_dir=pickled_dir, device="cpu", dtype="float32", compile="default")
    catalog = load_catalog(settings)
    StyleSlot.load(load_pipeline(settings.sources, torch.device("cpu"), torch.float32), catalog)
    assert_refused(catalog)

"""Speed switches on the tiny model: each keeps the picture, and compiled graphs survive style switches.

torch.compile runs on the CPU too (inductor writes C++), so the no-recompile promise is checked
here with dynamo's own `error_on_recompile`: any guard that a style switch breaks raises.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from torch._dynamo.utils import counters

from mmpp.inference.engine import Engine, GenerationRequest
from mmpp.inference.queue import GenerationQueue
from mmpp.inference.testing.random_lora import write_lora_style
from mmpp.settings import load_settings
from tests.engine.test_fast_preset import add_fast_preset

needs_compiler = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor needs a C compiler"
)


def pixels(result: object) -> np.ndarray:
    return np.asarray(result.image, dtype=np.int16)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def styled_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model plus a style with a wider LoRA (rank 8 against 4) and other adapter scales,
    so a switch changes every value the compiled graph reads."""
    model_dir = tmp_path_factory.mktemp("compile") / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    unet = UNet2DConditionModel.from_pretrained(model_dir / "sdxl" / "unet")
    write_lora_style(model_dir, "wide-style", unet, rank=8, seed=7, steps=4, guidance=5.0,
                     ip_adapter_scale=0.3, controlnet_scale=0.9)
    add_fast_preset(model_dir, "wide-style", seed=8)  # a second slot, and a CFG-off shape
    return model_dir


def load(model_dir: Path, **settings: object) -> Engine:
    return Engine.from_settings(load_settings(None, model_dir=model_dir, device="cpu", dtype="float32", **settings))


@pytest.fixture(scope="module")
def plain(styled_model_dir: Path) -> Engine:
    return load(styled_model_dir)


@pytest.fixture(scope="module")
def compiled(styled_model_dir: Path) -> Engine:
    return load(styled_model_dir, compile="default", max_batch_size=1)


def draw(engine: Engine, selfie: bytes, style: str, **kwargs: object) -> np.ndarray:
    request = GenerationRequest(face=engine.prepare(selfie), style=style, seed=11, steps=2, **kwargs)  # type: ignore[arg-type]
    return pixels(engine.generate([request])[0])


@needs_compiler
def test_style_switches_under_compile_never_recompile(compiled: Engine, selfie_bytes: bytes) -> None:
    assert compiled.slot is not None
    graphs = counters["stats"]["unique_graphs"]
    with torch._dynamo.config.patch(error_on_recompile=True):
        tiny = draw(compiled, selfie_bytes, "tiny-style")
        wide = draw(compiled, selfie_bytes, "wide-style")
        unstyled = draw(compiled, selfie_bytes, "wide-style", lora_scale=0.0)
        fast = draw(compiled, selfie_bytes, "wide-style", fast=True)
        tiny_again = draw(compiled, selfie_bytes, "tiny-style")
    assert counters["stats"]["unique_graphs"] == graphs  # warm-up compiled everything
    assert np.abs(tiny - wide).mean() > 2
    assert np.abs(wide - unstyled).max() > 3
    assert np.abs(wide - fast).mean() > 2
    assert (tiny == tiny_again).all()


@needs_compiler
def test_compiled_slot_draws_what_named_adapters_draw(
    compiled: Engine, plain: Engine, selfie_bytes: bytes
) -> None:
    # Hotswap (with rank padding) and the folded IP-Adapter/ControlNet scales are exact rewrites.
    for style, fast in (("wide-style", False), ("tiny-style", False), ("wide-style", True), ("wide-style", False)):
        ours, theirs = (draw(e, selfie_bytes, style, fast=fast) for e in (compiled, plain))
        assert np.abs(ours - theirs).max() <= 2


@pytest.mark.parametrize("switch", [{"attention": "eager"}, {"channels_last": True}, {"fuse_qkv": True}])
def test_each_switch_keeps_the_picture(
    switch: dict[str, object], styled_model_dir: Path, plain: Engine, selfie_bytes: bytes
) -> None:
    # Were the UNet's IP-Adapter processors or LoRA layers dropped (as diffusers' own
    # fuse_qkv_projections on the UNet would), the pictures would differ everywhere.
    engine = load(styled_model_dir, **switch)
    for style in ("wide-style", "tiny-style"):
        assert np.abs(draw(engine, selfie_bytes, style) - draw(plain, selfie_bytes, style)).max() <= 2


def test_warm_up_measures_batch_sizes_and_the_queue_follows(styled_model_dir: Path) -> None:
    settings = load_settings(None, model_dir=styled_model_dir, device="cpu", dtype="float32", max_batch_size=3,
                             warmup=True)
    engine = Engine.from_settings(settings)
    assert 1 <= engine.preferred_batch_size <= 3
    assert GenerationQueue(engine, settings).max_batch_size == engine.preferred_batch_size


@needs_compiler
def test_the_guards_weaker_ip_adapter_holds_for_one_call_compiled_or_not(
    compiled: Engine, plain: Engine, selfie_bytes: bytes
) -> None:
    """A redraw's `ip_adapter_scale` (src/mmpp/inference/queue/unlinkable.py) changes that call only, and the
    compiled slot draws it as named adapters do."""
    with torch._dynamo.config.patch(error_on_recompile=True):
        before = draw(compiled, selfie_bytes, "wide-style")
        weak = draw(compiled, selfie_bytes, "wide-style", ip_adapter_scale=0.0)
        after = draw(compiled, selfie_bytes, "wide-style")
    assert np.abs(before - weak).max() > 2, "the face's weight changed the picture"
    assert (before == after).all(), "the style's own scale is back for the next call"
    assert np.abs(weak - draw(plain, selfie_bytes, "wide-style", ip_adapter_scale=0.0)).max() <= 2

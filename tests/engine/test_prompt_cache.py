"""Each rendered prompt is encoded once: a repeat never runs the text encoders, and draws the same."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from transformers import CLIPTextModel

from mmpp.inference.engine import Engine, GenerationRequest
from mmpp.inference.testing.tiny_model import LORA_TARGETS, add_tiny_style
from mmpp.settings import load_settings


def write_text_encoder_lora(model_dir: Path, path: Path) -> None:
    """A LoRA that trained the text encoder too (as many community style LoRAs did)."""
    unet = UNet2DConditionModel.from_pretrained(model_dir / "sdxl" / "unet")
    encoder = CLIPTextModel.from_pretrained(model_dir / "sdxl" / "text_encoder")
    torch.manual_seed(5)
    layers = {}
    for name, model, targets in (("unet", unet, LORA_TARGETS),
                                 ("text_encoder", encoder, ["q_proj", "k_proj", "v_proj", "out_proj"])):
        config = LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False)
        inject_adapter_in_model(config, model, adapter_name="te")
        layers[name] = convert_state_dict_to_diffusers(get_peft_model_state_dict(model, adapter_name="te"))
    StableDiffusionXLPipeline.save_lora_weights(
        save_directory=str(path.parent), unet_lora_layers=layers["unet"],
        text_encoder_lora_layers=layers["text_encoder"], weight_name=path.name,
    )


@pytest.fixture(scope="module")
def cache_engine(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    model_dir = tmp_path_factory.mktemp("prompt-cache") / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    folder = add_tiny_style(model_dir, "te-style", seed=7)
    write_text_encoder_lora(model_dir, folder / "lora.safetensors")
    return Engine.from_settings(load_settings(None, model_dir=model_dir, device="cpu", dtype="float32"))


@pytest.fixture
def encoder_calls(cache_engine: Engine) -> Iterator[list[str]]:
    """Every forward of either text encoder, as it happens."""
    calls: list[str] = []
    pipe = cache_engine.pipe
    handles = [model.register_forward_hook(lambda m, a, o, n=name: calls.append(n))
               for name, model in (("text_encoder", pipe.text_encoder), ("text_encoder_2", pipe.text_encoder_2))]
    yield calls
    for handle in handles:
        handle.remove()


def draw(engine: Engine, selfie: bytes, **kwargs: object) -> bytes:
    face = engine.prepare(selfie)
    request = GenerationRequest(face=face, style=kwargs.pop("style", "tiny-style"), seed=3, **kwargs)  # type: ignore[arg-type]
    return engine.generate([request])[0].png()


def test_a_repeated_prompt_skips_the_text_encoders_and_draws_the_same_as_uncached(
    cache_engine: Engine, encoder_calls: list[str], selfie_bytes: bytes
) -> None:
    first = draw(cache_engine, selfie_bytes, background="teal")
    assert "text_encoder" in encoder_calls and "text_encoder_2" in encoder_calls
    encoder_calls.clear()
    second = draw(cache_engine, selfie_bytes, background="teal")
    assert encoder_calls == []
    assert second == first
    cache_engine.prompts.clear()
    uncached = draw(cache_engine, selfie_bytes, background="teal")
    assert encoder_calls and uncached == first


def test_another_prompt_misses(cache_engine: Engine, encoder_calls: list[str], selfie_bytes: bytes) -> None:
    draw(cache_engine, selfie_bytes, background="amber")
    encoder_calls.clear()
    draw(cache_engine, selfie_bytes, background="amber", framing="close-up portrait")
    assert encoder_calls
    encoder_calls.clear()
    # A LoRA that never touched the text encoders does not change the embeddings: its scale shares the entry.
    draw(cache_engine, selfie_bytes, background="amber", framing="close-up portrait", lora_scale=0.5)
    assert encoder_calls == []


def test_a_text_encoder_lora_and_its_scale_each_get_their_own_embeddings(
    cache_engine: Engine, encoder_calls: list[str], selfie_bytes: bytes
) -> None:
    cache = cache_engine.prompts
    before = set(cache._entries)
    draw(cache_engine, selfie_bytes, style="te-style", background="olive")
    assert encoder_calls
    encoder_calls.clear()
    draw(cache_engine, selfie_bytes, style="te-style", background="olive")
    assert encoder_calls == []
    draw(cache_engine, selfie_bytes, style="te-style", background="olive", lora_scale=0.3)
    assert encoder_calls  # the scale reaches the text encoder: a new entry
    new = [cache._entries[k] for k in cache._entries if k not in before]
    assert len(new) == 2
    # And they differ: serving one for the other would have drawn with the wrong embeddings.
    assert not torch.equal(new[0].prompt, new[1].prompt)


def test_the_cache_is_bounded_and_forgets_the_least_recently_used(cache_engine: Engine) -> None:
    from mmpp.inference.prompt_cache import PromptCache

    cache = PromptCache(capacity=2)
    pipe = cache_engine.pipe
    for prompt in ("a", "b", "a", "c"):
        cache.encode(pipe, [prompt], "", cfg=True, adapters=(), device=torch.device("cpu"))
    assert len(cache) == 2 and {k[0] for k in cache._entries} == {"a", "c"}
    assert (cache.hits, cache.misses) == (1, 3)


def test_half_precision_text_encoders_on_a_cpu_without_half_matmuls_encode_in_float32(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Most desktop CPUs multiply bf16 many times slower than float32: a memory plan's CPU text
    encoders then run a miss in float32 and keep the pipeline's dtype for everything else."""
    import mmpp.inference.prompt_cache as prompt_cache
    from mmpp.inference.loader import load_pipeline
    from mmpp.inference.prompt_cache import PromptCache
    from mmpp.model_sources import ModelSources

    pipe = load_pipeline(ModelSources.from_model_dir(tiny_model_dir), torch.device("cpu"), torch.bfloat16)
    seen: list[torch.dtype] = []
    pipe.text_encoder_2.register_forward_pre_hook(lambda m, a: seen.append(next(m.parameters()).dtype))
    native = PromptCache().encode(pipe, ["a portrait"], "blurry", cfg=True, adapters=(), device=torch.device("cpu"))
    assert set(seen) == {torch.bfloat16}  # the prompt and the negative, natively
    seen.clear()
    monkeypatch.setattr(prompt_cache, "slow_half_on_cpu", lambda encoder: True)
    upcast = PromptCache().encode(pipe, ["a portrait"], "blurry", cfg=True, adapters=(), device=torch.device("cpu"))
    assert seen and set(seen) == {torch.float32}
    assert next(pipe.text_encoder.parameters()).dtype == next(pipe.text_encoder_2.parameters()).dtype == torch.bfloat16
    for name, tensor in upcast.items():
        assert tensor.dtype == torch.bfloat16, name
        # The same embeddings up to bf16 rounding, not other ones.
        assert torch.allclose(tensor.float(), native[name].float(), atol=0.05, rtol=0.05), name

"""Training on the tiny model: it learns, checkpoints, resumes exactly, uses the prior batch, draws
validation images, and writes a style the engine loads next to the others."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mmpp.cli import main
from mmpp.inference.engine import Engine, GenerationRequest
from mmpp.inference.styles import StyleCatalog
from mmpp.settings import load_settings
from mmpp.training.config import ConfigError, make_config
from mmpp.training.trainer import Trainer, TrainResult
from tests.training.conftest import RESOLUTION, ConfigFactory, write_images

OVERFIT_STEPS = 24


@pytest.fixture(scope="module")
def styled_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny model whose styles/ will also hold the styles trained below."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("styled") / "model"))


@pytest.fixture(scope="module")
def overfit(styled_model: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A UNet LoRA overfitting four images, with checkpoints and validation images on the way."""
    data = write_images(tmp_path_factory.mktemp("overfit") / "data", 4)
    config = make_config(
        data=str(data), style_name="overfit", output=styled_model / "styles" / "overfit",
        base_model=str(styled_model / "sdxl"), resolution=RESOLUTION, max_steps=OVERFIT_STEPS,
        train_batch_size=4, rank=8, learning_rate=1e-2, instance_token="zwx style",
        checkpointing_steps=8, checkpoints_total_limit=2, validation_prompt="a portrait", validation_steps=12,
        num_validation_images=1, validation_inference_steps=2,
    )
    return Trainer(config).run()


@pytest.fixture(scope="module")
def text_encoder_style(styled_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained through the CLI with text-encoder LoRA, at the model's native resolution."""
    data = write_images(tmp_path_factory.mktemp("te") / "data", 2)
    output = styled_model / "styles" / "with-te"
    code = main([
        "train", "--data", str(data), "--style-name", "with-te", "--output", str(output),
        "--model-dir", str(styled_model), "--max-steps", "2", "--train-text-encoder",
        "--learning-rate", "1e-2", "--text-encoder-lr", "1e-2",
    ])
    assert code == 0
    return output


def test_loss_goes_down_when_overfitting_a_few_images(overfit: TrainResult) -> None:
    assert overfit.first_step == 0 and overfit.final_step == OVERFIT_STEPS
    assert len(overfit.losses) == OVERFIT_STEPS
    first, last = np.mean(overfit.losses[:5]), np.mean(overfit.losses[-5:])
    assert last < 0.97 * first, overfit.losses


def test_output_is_a_style_in_the_diffusers_layout(overfit: TrainResult, styled_model: Path) -> None:
    style = StyleCatalog.load(styled_model / "styles").get("overfit")
    assert style.definition.trigger_words == ["zwx style"]
    assert Path(style.lora_path) == overfit.lora_path
    with safe_open(str(overfit.lora_path), "pt") as f:
        keys = list(f.keys())
        metadata = json.loads(f.metadata()["lora_adapter_metadata"])
    assert keys and all(k.startswith("unet.") and ".lora." in k for k in keys)
    assert metadata["unet.r"] == 8


def test_validation_images_every_n_steps_and_the_last_becomes_the_sample(overfit: TrainResult) -> None:
    names = sorted(p.name for p in (overfit.output / "validation").iterdir())
    assert names == ["step-000012-0.png", "step-000024-0.png"]
    style = json.loads((overfit.output / "style.json").read_text())
    assert style["sample_image"] == "sample.png"
    assert (overfit.output / "sample.png").read_bytes() == (overfit.output / "validation" / names[-1]).read_bytes()


def test_checkpoints_hold_the_lora_and_optimizer_not_the_model(overfit: TrainResult) -> None:
    assert [p.name for p in overfit.checkpoints] == ["checkpoint-8", "checkpoint-16", "checkpoint-24"]
    kept = sorted(p.name for p in (overfit.output / "checkpoints").iterdir())
    assert kept == ["checkpoint-16", "checkpoint-24"]  # --checkpoints-total-limit 2
    files = {p.name for p in overfit.checkpoints[-1].iterdir()}
    assert {"pytorch_lora_weights.safetensors", "optimizer.bin", "scheduler.bin"} <= files
    assert not any(name.startswith("model") for name in files)


def test_resumed_run_continues_at_the_saved_step_with_the_same_optimizer_state(
    make_train_config: ConfigFactory, tmp_path: Path
) -> None:
    options = {"max_steps": 5, "checkpointing_steps": 3, "gradient_accumulation_steps": 2}
    whole = Trainer(make_train_config("whole", **options)).run()

    resumed_dir = tmp_path / "styles" / "resumed"
    shutil.copytree(whole.output / "checkpoints" / "checkpoint-3", resumed_dir / "checkpoints" / "checkpoint-3")
    trainer = Trainer(make_train_config("resumed", resume_from_checkpoint="latest", **options))
    trainer.setup()
    step = trainer.resume()
    assert step == 3
    saved = torch.load(resumed_dir / "checkpoints" / "checkpoint-3" / "optimizer.bin", weights_only=False)
    restored = trainer.optimizer.state_dict()
    assert saved["state"].keys() == restored["state"].keys()
    for key, state in saved["state"].items():
        assert torch.equal(state["step"], restored["state"][key]["step"])
        assert torch.equal(state["exp_avg_sq"], restored["state"][key]["exp_avg_sq"])
    result = trainer.train(step)

    assert (result.first_step, result.final_step) == (3, 5)
    assert result.losses == whole.losses[3:]
    # The loss plot of the resumed run covers the steps trained before the interruption too.
    history = trainer._history()
    assert list(history.steps) == [1, 2, 3, 4, 5] and list(history.losses) == whole.losses
    assert (result.output / "training.png").is_file()
    ours, theirs = load_file(result.lora_path), load_file(whole.lora_path)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_a_resolution_the_model_cannot_halve_is_refused(make_train_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match="--resolution must be a multiple of 4"):
        Trainer(make_train_config(resolution=30)).setup()


def test_prior_preservation_trains_on_the_prior_batch(make_train_config: ConfigFactory, tmp_path: Path) -> None:
    faces = write_images(tmp_path / "faces", 3, size=(40, 40), captions=False, seed=7)
    runs = {
        weight: Trainer(make_train_config(f"prior-{int(weight)}", prior_data=faces, prior_loss_weight=weight,
                                          max_steps=3)).run()
        for weight in (0.0, 1.0)
    }
    assert all(len(r.prior_losses) == 3 and min(r.prior_losses) > 0 for r in runs.values())
    # Same data, noise and seed: only the prior batch's gradient can tell the two LoRAs apart.
    without, with_prior = load_file(runs[0.0].lora_path), load_file(runs[1.0].lora_path)
    assert any(not torch.equal(without[k], with_prior[k]) for k in without)


def test_text_encoder_lora_is_saved_for_all_three_models(text_encoder_style: Path) -> None:
    lora = load_file(text_encoder_style / "lora.safetensors")
    assert {k.split(".", 1)[0] for k in lora} == {"unet", "text_encoder", "text_encoder_2"}
    for part in ("unet.", "text_encoder.", "text_encoder_2."):  # up weights start at zero: these trained
        assert any(v.abs().sum() > 0 for k, v in lora.items() if k.startswith(part) and ".up." in k), part
    style = json.loads((text_encoder_style / "style.json").read_text())
    assert style["trigger_words"] == ["withte style"]


def _draw(engine: Engine, selfie: bytes, style: str, scale: float | None = None) -> np.ndarray:
    request = GenerationRequest(face=engine.prepare(selfie), style=style, seed=3, steps=2, lora_scale=scale)
    (result,) = engine.generate([request])
    return np.asarray(result.image, dtype=np.int16)


def test_engine_loads_trained_styles_beside_the_others_and_switches(
    overfit: TrainResult, text_encoder_style: Path, styled_model: Path, engine: Engine, selfie_bytes: bytes
) -> None:
    styled = Engine.from_settings(load_settings(None, model_dir=styled_model, device="cpu", dtype="float32"))
    assert styled.catalog.names() == ["overfit", "tiny-style", "with-te"]
    assert styled.pipe.get_list_adapters()["text_encoder"] == ["with-te"]

    for name in ("overfit", "with-te"):
        assert np.abs(_draw(styled, selfie_bytes, name) - _draw(styled, selfie_bytes, name, 0.0)).max() > 0, name
    # After a style with text-encoder layers, the UNet-only style must look as it does where the
    # trained styles were never loaded: their adapters are off, text encoders included.
    _draw(styled, selfie_bytes, "with-te")
    after = _draw(styled, selfie_bytes, "tiny-style")
    clean = _draw(engine, selfie_bytes, "tiny-style")
    assert np.abs(after - clean).max() <= 1
    # Images of a random model barely show the text encoders, so compare their output directly.
    with_te, tiny_after = _prompt_embeds(styled, "with-te"), _prompt_embeds(styled, "tiny-style")
    tiny_clean = _prompt_embeds(engine, "tiny-style")
    assert not torch.equal(with_te, tiny_clean)
    assert torch.equal(tiny_after, tiny_clean)


def _prompt_embeds(engine: Engine, style: str) -> torch.Tensor:
    engine.switch_style(engine.catalog.get(style))
    embeds, *_ = engine.pipe.encode_prompt("zwx style, a portrait", device=engine.device,
                                           do_classifier_free_guidance=False)
    return embeds


@pytest.mark.parametrize(("cache", "train_text_encoder"), [(True, False), (False, False), (True, True)])
def test_cached_runs_skip_the_vae_and_frozen_text_encoders(
    make_train_config: ConfigFactory, cache: bool, train_text_encoder: bool
) -> None:
    trainer = Trainer(make_train_config(f"cache-{int(cache)}-{int(train_text_encoder)}", max_steps=2,
                                        cache_latents=cache, train_text_encoder=train_text_encoder))
    trainer.setup()
    calls = {"vae": 0, "text": 0}

    def count(name: str, forward: object) -> object:
        def counted(*args: object, **kwargs: object) -> object:
            calls[name] += 1
            return forward(*args, **kwargs)  # type: ignore[operator]
        return counted

    trainer.parts.vae.encode = count("vae", trainer.parts.vae.encode)  # type: ignore[method-assign]
    encoder = trainer.parts.text_encoders[0]
    encoder.forward = count("text", encoder.forward)  # type: ignore[method-assign]
    trainer.train(0)
    assert (calls["vae"] > 0) == (not cache)
    assert (calls["text"] > 0) == (not cache or train_text_encoder)

"""The reference scripts' options on the tiny model: optimizers, epochs and repeats, a folder with one
prompt, class images drawn by the base model, DoRA, the kohya copy, the plot and TensorBoard."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from mmpp.cli import main
from mmpp.inference.styles import StyleCatalog
from mmpp.training.config import ConfigError
from mmpp.training.data import DataError, image_files
from mmpp.training.plot import PLOT_FILE, write_plot
from mmpp.training.trainer import Trainer
from tests.training.conftest import ConfigFactory, write_images


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


def test_eight_bit_adam_keeps_8_bit_state_and_trains(make_train_config: ConfigFactory) -> None:
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (pip install 'mmpp-bot[train]')")
    from mmpp.training.optimizers import eight_bit_problem

    if problem := eight_bit_problem("cpu"):
        pytest.skip(f"bitsandbytes does not run 8-bit Adam on this CPU: {problem}")
    import bitsandbytes as bnb

    # bitsandbytes keeps 32-bit state for tensors under 4096 values; rank 64 makes the tiny model's
    # 64-wide layers' LoRA matrices that big.
    trainer = Trainer(make_train_config("eight-bit", optimizer="adamw8bit", rank=64, max_steps=3, report_to="none"))
    result = trainer.run()
    assert isinstance(trainer.optimizer.optimizer, bnb.optim.AdamW8bit)
    states = list(trainer.optimizer.optimizer.state.values())
    assert any(v.dtype == torch.uint8 for s in states for v in s.values() if isinstance(v, torch.Tensor))
    assert all(np.isfinite(result.losses))
    assert any(".lora.up." in k and v.abs().sum() > 0 for k, v in load_file(result.lora_path).items())


def test_prodigy_trains(make_train_config: ConfigFactory) -> None:
    prodigyopt = pytest.importorskip("prodigyopt", reason="prodigyopt is not installed (pip install 'mmpp-bot[train]')")
    trainer = Trainer(make_train_config("prodigy", optimizer="prodigy", learning_rate=1.0, max_steps=3,
                                        report_to="none"))
    result = trainer.run()
    assert isinstance(trainer.optimizer.optimizer, prodigyopt.Prodigy)
    assert all(np.isfinite(result.losses))
    assert any(".lora.up." in k and v.abs().sum() > 0 for k, v in load_file(result.lora_path).items())


@pytest.mark.parametrize(
    ("module", "option", "message"),
    [
        ("prodigyopt", {"optimizer": "prodigy"}, "--optimizer prodigy needs the prodigyopt package"),
        ("bitsandbytes", {"optimizer": "adamw8bit"}, "--optimizer adamw8bit: needs the bitsandbytes package"),
        ("tensorboard", {"report_to": "tensorboard"}, "--report-to tensorboard needs the tensorboard package"),
    ],
)
def test_a_missing_optional_package_is_one_line_before_models_load(
    make_train_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, module: str, option: dict,
    message: str,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # how Python marks a module as absent
    with pytest.raises(ConfigError, match=message):
        Trainer(make_train_config("missing", base_model=str(tmp_path / "no-model"), **option)).run()


def test_epochs_and_repeats_set_the_steps_and_show_each_image_that_often(make_train_config: ConfigFactory) -> None:
    trainer = Trainer(make_train_config("epochs", max_steps=None, num_train_epochs=2, repeats=3,
                                        train_batch_size=2, report_to="none"))
    trainer.setup()
    assert len(trainer.dataset) == 4 * 3
    assert trainer.max_steps == 2 * 6  # 12 samples per epoch in batches of 2
    seen = Counter(trainer.dataset.image_index(i) for i in trainer.sampler.order())
    assert seen == dict.fromkeys(range(4), 3)
    result = trainer.train(0)
    assert result.final_step == 12 and len(result.losses) == 12


def test_max_steps_wins_over_epochs(make_train_config: ConfigFactory) -> None:
    trainer = Trainer(make_train_config("both", max_steps=3, num_train_epochs=5, report_to="none"))
    trainer.setup()
    assert trainer.max_steps == 3


def test_a_folder_without_metadata_trains_on_the_instance_prompt(
    make_train_config: ConfigFactory, tmp_path: Path
) -> None:
    folder = write_images(tmp_path / "plain", 3, captions=False)
    with pytest.raises(DataError, match="or give every image one caption with --instance-prompt"):
        Trainer(make_train_config("plain", data=str(folder), base_model=str(tmp_path / "no-model"))).run()

    config = make_train_config("plain", data=str(folder), instance_token=None,
                               instance_prompt="a drawing in the style of sks", report_to="none")
    trainer = Trainer(config)
    result = trainer.run()
    captions = {e.caption for e in trainer.dataset.instance.examples}
    assert captions == {"a drawing in the style of sks"}  # the trigger is the prompt: not prepended twice
    style = StyleCatalog.load(result.output.parent).get("plain").definition
    assert style.trigger_words == ["a drawing in the style of sks"]


def test_missing_class_images_are_drawn_by_the_base_model(make_train_config: ConfigFactory, tmp_path: Path) -> None:
    faces = write_images(tmp_path / "faces", 1, size=(40, 40), captions=False, seed=3)
    config = make_train_config("drawn-prior", prior_data=faces, num_class_images=3, class_inference_steps=2,
                               sample_batch_size=2, max_steps=2, report_to="none")
    result = Trainer(config).run()
    files = image_files(faces)
    assert len(files) == 3
    drawn = [p for p in files if p.suffix == ".jpg"]
    assert [p.name.split("-")[0] for p in drawn] == ["00001", "00002"]
    for path in drawn:
        with Image.open(path) as image:
            assert image.size == (32, 32)  # at the training resolution
    assert len(result.prior_losses) == 2

    # Enough there already: nothing is drawn, and only as many as asked for are used.
    trainer = Trainer(make_train_config("drawn-prior-2", prior_data=faces, num_class_images=2, max_steps=1,
                                        report_to="none"))
    trainer.setup()
    assert len(image_files(faces)) == 3 and len(trainer.dataset.prior) == 2


@pytest.fixture(scope="module")
def tiny_pipe(tiny_model_dir: Path) -> StableDiffusionXLPipeline:
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_model_dir / "sdxl")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _unet_output(pipe: StableDiffusionXLPipeline, lora: Path | None) -> torch.Tensor:
    """The UNet (and text encoders') output on fixed inputs, with `lora` loaded alone."""
    pipe.unload_lora_weights()
    if lora is not None:
        pipe.load_lora_weights(str(lora.parent), weight_name=lora.name)
    torch.manual_seed(0)
    latents = torch.randn(1, 4, 8, 8)
    embeds, _, pooled, _ = pipe.encode_prompt("zwx style, a portrait", do_classifier_free_guidance=False)
    time_ids = torch.tensor([[32.0, 32.0, 0.0, 0.0, 32.0, 32.0]])
    with torch.no_grad():
        out = pipe.unet(latents, torch.tensor([500]), embeds,
                        added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
    pipe.unload_lora_weights()
    return out


def test_kohya_copy_loads_back_and_draws_as_the_diffusers_file(
    make_train_config: ConfigFactory, tiny_pipe: StableDiffusionXLPipeline, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = make_train_config("kohya-copy", output_kohya_format=True, rank=4, lora_alpha=8.0,
                               train_text_encoder=True, text_encoder_lr=1e-2, max_steps=3, report_to="none")
    result = Trainer(config).run()
    kohya = result.output / "kohya-copy.safetensors"
    with safe_open(str(kohya), "pt") as f:
        keys = list(f.keys())
        alphas = {float(f.get_tensor(k)) for k in keys if k.endswith(".alpha")}
    assert {k.split("_", 2)[1] for k in keys} == {"unet", "te1", "te2"}
    assert alphas == {8.0}  # the real alpha, not the rank

    original, from_kohya, bare = (_unet_output(tiny_pipe, p) for p in (result.lora_path, kohya, None))
    assert not torch.allclose(original, bare, atol=1e-4)
    assert torch.allclose(from_kohya, original, atol=1e-5)

    styles = tmp_path / "model-for-import"
    styles.mkdir()
    code = main(["style", "import", str(kohya), "--name", "reimported", "--base-model", config.base_model,
                 "--styles-dir", str(styles)])
    assert code == 0, capsys.readouterr().err
    imported = StyleCatalog.load(styles).get("reimported")
    assert torch.allclose(_unet_output(tiny_pipe, Path(imported.lora_path)), original, atol=1e-5)


def test_a_kohya_copy_of_dora_is_refused(make_train_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match=r"^--output-kohya-format: not with --use-dora"):
        make_train_config("dora-kohya", use_dora=True, output_kohya_format=True)


def test_dora_trains_magnitudes_and_loads_in_diffusers(
    make_train_config: ConfigFactory, tiny_pipe: StableDiffusionXLPipeline
) -> None:
    result = Trainer(make_train_config("dora", use_dora=True, max_steps=2, report_to="none")).run()
    lora = load_file(result.lora_path)
    assert any("lora_magnitude_vector" in k for k in lora)
    assert not torch.allclose(_unet_output(tiny_pipe, result.lora_path), _unet_output(tiny_pipe, None), atol=1e-5)


def test_the_loss_plot_is_written_beside_the_lora(make_train_config: ConfigFactory) -> None:
    result = Trainer(make_train_config("plotted", max_steps=3, lr_scheduler="linear", report_to="none")).run()
    with Image.open(result.output / PLOT_FILE) as image:
        assert image.format == "PNG" and image.size == (900, 600)
        assert len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 3  # lines drawn
    assert result.lrs[0] > result.lrs[-1]  # linear decay, as plotted


def test_the_plot_is_drawn_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    path = write_plot(tmp_path / "plot.png", [1, 2, 3, 4], [1.0, 0.5, 0.4, 0.2], [1e-4, 1e-4, 5e-5, 0.0])
    pixels = np.asarray(Image.open(path).convert("RGB"))
    blue = np.all(pixels == (31, 95, 159), axis=-1)  # the moving average's colour
    orange = np.all(pixels == (192, 98, 43), axis=-1)  # the learning rate's
    assert blue.sum() > 50 and orange.sum() > 50
    # The loss falls: its line ends lower (a larger row) on the right than on the left.
    rows, cols = np.nonzero(blue)
    assert rows[cols == cols.max()].mean() > rows[cols == cols.min()].mean()


def test_tensorboard_logs_every_step(make_train_config: ConfigFactory) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'mmpp-bot[train]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = make_train_config("boarded", max_steps=3, report_to="tensorboard")
    Trainer(config).run()
    accumulator = EventAccumulator(str(config.logs_dir / "mmpp-train"))  # scalars; hparams go in a subfolder
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("loss")] == [1, 2, 3]
    assert [e.step for e in accumulator.Scalars("lr")] == [1, 2, 3]


def test_the_reference_scripts_option_names_work_on_the_cli(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_images(tmp_path / "plain", 2, captions=False)
    output = tmp_path / "styles" / "ref-names"
    code = main([
        "train", "--instance-data-dir", str(folder), "--instance-prompt", "a drawing in sks style",
        "--style-name", "ref-names", "--output", str(output), "--base-model", str(tiny_model_dir / "sdxl"),
        "--resolution", "32", "--num-train-epochs", "2", "--repeats", "2", "--train-batch-size", "2",
        "--optimizer", "AdamW", "--output-kohya-format", "--report-to", "none", "--learning-rate", "1e-2",
    ])
    out = capsys.readouterr().out
    assert code == 0
    assert "Trained steps 0-4" in out  # 2 epochs of 2 images x 2 repeats in batches of 2
    assert (output / "ref-names.safetensors").is_file() and (output / PLOT_FILE).is_file()


def test_a_dora_run_resumes_exactly(make_train_config: ConfigFactory, tmp_path: Path) -> None:
    import shutil

    options = {"use_dora": True, "max_steps": 3, "checkpointing_steps": 2, "report_to": "none"}
    whole = Trainer(make_train_config("dora-whole", **options)).run()
    resumed_dir = tmp_path / "styles" / "dora-resumed"
    shutil.copytree(whole.output / "checkpoints" / "checkpoint-2", resumed_dir / "checkpoints" / "checkpoint-2")
    result = Trainer(make_train_config("dora-resumed", resume_from_checkpoint="latest", **options)).run()
    assert (result.first_step, result.losses) == (2, whole.losses[2:])
    ours, theirs = load_file(result.lora_path), load_file(whole.lora_path)
    assert any("lora_magnitude_vector" in k for k in ours)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)

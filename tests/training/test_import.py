"""`mmpp style import`: LoRAs from elsewhere become styles that draw exactly what the original does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from diffusers.utils import convert_state_dict_to_diffusers, convert_unet_state_dict_to_peft
from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel

from mmpp.cli import main
from mmpp.inference.engine import Engine, GenerationRequest
from mmpp.inference.styles import StyleCatalog
from mmpp.settings import load_settings
from mmpp.training.importer import LoraImportError, import_lora


def _text_encoder_lora(model_dir: Path) -> dict[str, torch.Tensor]:
    """Random, non-zero LoRA layers for the first text encoder, in PEFT naming."""
    torch.manual_seed(5)
    encoder = CLIPTextModel.from_pretrained(model_dir / "sdxl" / "text_encoder")
    config = LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["q_proj", "v_proj"])
    inject_adapter_in_model(config, encoder, "default")
    return {k: v * 20 for k, v in get_peft_model_state_dict(encoder).items()}  # big enough to matter


def _reference_and_kohya(model_dir: Path, folder: Path) -> tuple[Path, Path]:
    """The same LoRA twice: diffusers layout, and kohya layout with alpha = 2 x rank (as kohya
    trainers often save) and the up weights halved to match."""
    unet_lora = load_file(model_dir / "styles" / "tiny-style" / "lora.safetensors")
    unet_peft = convert_unet_state_dict_to_peft({k.removeprefix("unet."): v for k, v in unet_lora.items()})
    text_peft = _text_encoder_lora(model_dir)
    folder.mkdir()
    StableDiffusionXLPipeline.save_lora_weights(
        save_directory=str(folder), weight_name="reference.safetensors", unet_lora_layers=unet_peft,
        text_encoder_lora_layers=convert_state_dict_to_diffusers(text_peft),
    )
    # Kohya names text-encoder layers as transformers 4 did, with a `text_model` level.
    peft = {f"unet.{k}": v for k, v in unet_peft.items()} | {
        f"text_encoder.text_model.{k}": v for k, v in text_peft.items()
    }
    kohya = convert_state_dict_to_kohya(peft)
    for key in [k for k in kohya if k.endswith(".alpha")]:
        layer = key.removesuffix(".alpha")
        kohya[key] = kohya[key] * 2.0
        kohya[f"{layer}.lora_up.weight"] = kohya[f"{layer}.lora_up.weight"] / 2
    assert any(k.startswith("lora_te1_text_model_encoder") for k in kohya)
    save_file(kohya, str(folder / "kohya.safetensors"))
    return folder / "reference.safetensors", folder / "kohya.safetensors"


def test_kohya_and_diffusers_loras_import_and_draw_alike(
    model_copy: Path, tmp_path: Path, selfie_bytes: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, kohya = _reference_and_kohya(model_copy, tmp_path / "loras")
    for name, path in (("as-trained", reference), ("from-kohya", kohya)):
        code = main(["style", "import", str(path), "--name", name, "--model-dir", str(model_copy),
                     "--trigger", "tiny style", "--scale", "0.8"])
        assert code == 0, capsys.readouterr().err
    assert "Style 'from-kohya' written to" in capsys.readouterr().out
    # A file already in the diffusers layout is taken as it is.
    assert (model_copy / "styles" / "as-trained" / "lora.safetensors").read_bytes() == reference.read_bytes()
    style = StyleCatalog.load(model_copy / "styles").get("from-kohya").definition
    assert (style.trigger_words, style.lora.scale) == (["tiny style"], 0.8)

    engine = Engine.from_settings(load_settings(None, model_dir=model_copy, device="cpu", dtype="float32"))
    face = engine.prepare(selfie_bytes)
    images = {}
    embeds = {}
    for name in ("as-trained", "from-kohya", "tiny-style"):
        (result,) = engine.generate([GenerationRequest(face=face, style=name, seed=1, steps=2, lora_scale=1.0)])
        images[name] = np.asarray(result.image, dtype=np.int16)
        embeds[name] = engine.pipe.encode_prompt("tiny style", device=engine.device,
                                                 do_classifier_free_guidance=False)[0]
    assert np.abs(images["from-kohya"] - images["as-trained"]).max() <= 1
    assert torch.allclose(embeds["from-kohya"], embeds["as-trained"], atol=1e-5)
    assert not torch.allclose(embeds["from-kohya"], embeds["tiny-style"], atol=1e-3)


def test_unet_only_leaves_the_text_encoder_layers_out(model_copy: Path, tmp_path: Path) -> None:
    _, kohya = _reference_and_kohya(model_copy, tmp_path / "loras")
    folder = import_lora(kohya, name="unet-part", styles_dir=tmp_path / "styles",
                         base_model=str(model_copy / "sdxl"), unet_only=True)
    assert {k.split(".", 1)[0] for k in load_file(folder / "lora.safetensors")} == {"unet"}


def test_a_lora_for_another_model_is_refused_before_anything_is_written(model_copy: Path, tmp_path: Path) -> None:
    lora = load_file(model_copy / "styles" / "tiny-style" / "lora.safetensors")
    key = next(k for k in lora if k.endswith("lora.down.weight"))
    lora[key] = torch.zeros(lora[key].shape[0], 768)  # SD 1.5 widths
    save_file(lora, str(tmp_path / "sd15.safetensors"))
    with pytest.raises(LoraImportError, match=r"has size 768 where .* has \d+; this LoRA was made for another model"):
        import_lora(tmp_path / "sd15.safetensors", name="sd15", styles_dir=tmp_path / "styles",
                    base_model=str(model_copy / "sdxl"))
    assert not (tmp_path / "styles" / "sd15").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"weight": torch.zeros(2)}, "not an SDXL LoRA in the diffusers or kohya layout"),
        (b"not safetensors", "not a readable safetensors file"),
    ],
)
def test_files_that_are_not_loras(model_copy: Path, tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "thing.safetensors"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        save_file(content, str(path))
    with pytest.raises(LoraImportError, match=message):
        import_lora(path, name="thing", styles_dir=tmp_path, base_model=str(model_copy / "sdxl"))


def test_cli_errors_are_one_line(model_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = model_copy / "styles" / "tiny-style" / "lora.safetensors"
    assert main(["style", "import", str(tmp_path / "x.ckpt"), "--name", "x", "--model-dir", str(model_copy)]) == 1
    assert main(["style", "import", str(tiny), "--name", "tiny-style", "--model-dir", str(model_copy)]) == 1
    assert main(["style", "import", str(tiny), "--name", "Bad Name", "--model-dir", str(model_copy)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == f"mmpp: {tmp_path / 'x.ckpt'} does not exist"
    assert "already holds a style; pass --force" in lines[1]
    assert lines[2].startswith("mmpp: --name: must be 1-32 lowercase letters")


def test_python_m_mmpp_training_names_itself_as_the_manual_writes_it() -> None:
    """docs/styles.md runs training as `accelerate launch -m mmpp.training train ...`: the module is there
    and its help says how it was called."""
    command = [sys.executable, "-m", "mmpp.training", "--help"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m mmpp.training"), done.stdout
    assert "train a style LoRA" in done.stdout and "prepare-data" in done.stdout

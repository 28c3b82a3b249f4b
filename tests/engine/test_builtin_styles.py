"""Styles that need no LoRA: the built-in prompt styles, overriding them, and running them with every
LoRA off, even right after a LoRA style ran."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from mmpp.inference.engine import Engine, GenerationRequest
from mmpp.inference.style_definition import StyleDefinition
from mmpp.inference.style_folder import StyleError, load_style, write_style
from mmpp.inference.styles import StyleCatalog, builtin_styles_dir
from mmpp.settings import Settings, load_settings

BUILTINS = {"sunny-cartoon", "anime", "animated-3d", "watercolor", "comic-ink", "pixel-art"}


def test_six_built_in_prompt_styles_ship_inside_the_package() -> None:
    catalog = StyleCatalog.load(Path("no-such-styles-folder"), builtin=True)
    assert set(catalog.names()) == BUILTINS and not catalog.errors
    for style in catalog.styles.values():
        definition = style.definition
        assert style.builtin and definition.lora is None and style.lora_path is None
        assert definition.title and len(style.description) > 20
        prompt = definition.render_prompt("teal", "close-up")
        assert prompt.startswith(definition.prompt.split(",")[0]) and "close-up" in prompt and "teal" in prompt
        assert "photo" in definition.negative_prompt and "watermark" in definition.negative_prompt
        # A portrait is one whole head on the server's background, not a crowd or the member's room.
        for unwanted in ("cropped head", "out of frame", "extra people", "busy background"):
            assert unwanted in definition.negative_prompt, (style.name, unwanted)
        # No trademark in a built-in: the words a server admin and SDXL read are neutral.
        text = " ".join((style.name, definition.title, style.description, definition.prompt)).lower()
        assert not any(mark in text for mark in ("simpson", "springfield", "pixar", "disney", "ghibli")), style.name
        # CLIP reads 77 tokens; a prompt past that loses its end (the background) silently.
        assert len(prompt.split()) + prompt.count(",") < 70
        assert 0 < definition.controlnet_scale < 1 and 0 < definition.ip_adapter_scale < 1
        assert 20 <= definition.steps <= 40 and 4 <= definition.guidance <= 9
    assert catalog.get("sunny-cartoon").definition.title == "Sunny Cartoon"
    # The wheel carries them: package data, not a file next to the source tree only.
    assert (builtin_styles_dir() / "sunny-cartoon" / "style.json").is_file()


def test_the_old_name_of_a_renamed_built_in_still_finds_it() -> None:
    """Presets, overrides and Reroll buttons stored before the rename say `simpsons`."""
    catalog = StyleCatalog.load(Path("no-such-styles-folder"), builtin=True)
    assert "simpsons" not in catalog.names()
    assert catalog.canonical("simpsons") == "sunny-cartoon"
    assert catalog.get("simpsons").name == "sunny-cartoon"
    assert catalog.renamed() == {"simpsons": "sunny-cartoon"}
    assert catalog.canonical("anime") == "anime" and catalog.canonical("nope") == "nope"


def test_the_default_style_is_a_built_in() -> None:
    assert Settings.model_fields["default_style"].default in BUILTINS


def _trained(styles: Path, name: str, title: str, tiny_model_dir: Path) -> None:
    folder = styles / name
    folder.mkdir(parents=True)
    shutil.copy(tiny_model_dir / "styles" / "tiny-style" / "lora.safetensors", folder / "lora.safetensors")
    write_style(folder, StyleDefinition.model_validate(
        {"name": name, "display_name": title, "trigger_words": [f"sk{name} style"],
         "lora": {"source": "lora.safetensors", "scale": 0.9}}))


def test_a_styles_dir_folder_of_the_same_name_replaces_the_built_in(tiny_model_dir: Path, tmp_path: Path) -> None:
    styles = tmp_path / "styles"
    _trained(styles, "sunny-cartoon", "Sunny (trained)", tiny_model_dir)
    catalog = StyleCatalog.load(styles, builtin=True)
    assert set(catalog.names()) == BUILTINS
    sunny = catalog.get("sunny-cartoon")
    assert not sunny.builtin and sunny.definition.lora is not None and sunny.definition.title == "Sunny (trained)"
    assert catalog.get("simpsons") is sunny  # the old name follows whatever answers to the new one
    assert catalog.get("anime").builtin
    # Turned off, only the folder's own styles remain.
    assert StyleCatalog.load(styles, builtin=False).names() == ["sunny-cartoon"]


def test_an_operators_own_style_of_a_retired_built_in_name_wins_over_the_alias(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    styles = tmp_path / "styles"
    _trained(styles, "simpsons", "Springfield (trained)", tiny_model_dir)
    catalog = StyleCatalog.load(styles, builtin=True)
    assert set(catalog.names()) == BUILTINS | {"simpsons"}
    simpsons = catalog.get("simpsons")
    assert not simpsons.builtin and simpsons.definition.title == "Springfield (trained)"
    assert catalog.canonical("simpsons") == "simpsons" and catalog.renamed() == {}
    assert catalog.get("sunny-cartoon").builtin


@pytest.fixture(scope="module")
def mixed_engine(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """Built-ins on, plus `prompt-twin`: tiny-style's exact definition without its LoRA."""
    model_dir = tmp_path_factory.mktemp("mixed-styles") / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    definition = json.loads((model_dir / "styles" / "tiny-style" / "style.json").read_text())
    definition.update(name="prompt-twin")
    del definition["lora"], definition["sample_image"]
    write_style(model_dir / "styles" / "prompt-twin", StyleDefinition.model_validate(definition))
    return Engine.from_settings(load_settings(None, model_dir=model_dir, device="cpu", dtype="float32",
                                              builtin_styles=True))


def _run(engine: Engine, selfie: bytes, style: str, **kwargs: object) -> bytes:
    request = GenerationRequest(face=engine.prepare(selfie), style=style, seed=21, steps=2, **kwargs)  # type: ignore[arg-type]
    return engine.generate([request])[0].png()


def test_a_prompt_style_runs_with_no_lora_active_even_after_a_lora_style(
    mixed_engine: Engine, selfie_bytes: bytes
) -> None:
    engine = mixed_engine
    assert {"tiny-style", "prompt-twin"} | BUILTINS == set(engine.catalog.names())
    assert list(engine.pipe.get_list_adapters()["unet"]) == ["tiny-style"]  # prompt styles load no adapter
    prompt_first = _run(engine, selfie_bytes, "prompt-twin")
    styled = _run(engine, selfie_bytes, "tiny-style")
    prompt_after_lora = _run(engine, selfie_bytes, "prompt-twin")
    unstyled = _run(engine, selfie_bytes, "tiny-style", lora_scale=0.0)
    assert styled != prompt_first, "the LoRA style draws differently"
    # Same picture as the LoRA at weight 0: no LoRA took part, before or after a LoRA style ran.
    assert prompt_first == prompt_after_lora == unstyled
    # And back: the LoRA style is exactly itself again.
    assert _run(engine, selfie_bytes, "tiny-style") == styled


def test_a_built_in_style_generates_on_the_tiny_model(mixed_engine: Engine, selfie_bytes: bytes) -> None:
    engine = mixed_engine
    request = GenerationRequest(face=engine.prepare(selfie_bytes), style="pixel-art", seed=1, steps=2)
    result = engine.generate([request])[0]
    assert result.image is not None and result.image.size == (engine.resolution, engine.resolution)
    assert engine.pipe.scheduler.__class__.__name__ == "EulerAncestralDiscreteScheduler"  # the style's own
    # Pixel art leaves the engine in its small palette; the PNG a member gets holds no other colour.
    palette = engine.catalog.get("pixel-art").definition.palette
    assert palette == 16
    with Image.open(io.BytesIO(result.png())) as delivered:
        colours = delivered.convert("RGB").getcolors(maxcolors=4096)
    assert colours is not None and 2 <= len(colours) <= palette
    # A style without one keeps the model's colours (the tiny model's noise has hundreds).
    plain = engine.generate([GenerationRequest(face=request.face, style="anime", seed=1, steps=2)])[0]
    assert plain.image is not None and len(plain.image.getcolors(maxcolors=65536) or []) > palette


def test_a_palette_must_be_a_sensible_number_of_colours(tmp_path: Path) -> None:
    for bad in (1, 257, "many"):
        folder = tmp_path / f"pal-{bad}"
        folder.mkdir()
        (folder / "style.json").write_text(json.dumps({"name": folder.name, "palette": bad}))
        with pytest.raises(StyleError, match="field 'palette'"):
            load_style(folder)


def test_a_fresh_install_with_only_built_in_styles_generates(tiny_model_dir: Path, tmp_path: Path,
                                                             selfie_bytes: bytes) -> None:
    """No LoRA anywhere (no training, no import): the engine loads and draws a built-in style."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir, ignore=shutil.ignore_patterns("tiny-style"))
    engine = Engine.from_settings(load_settings(None, model_dir=model_dir, device="cpu", dtype="float32",
                                                builtin_styles=True))
    assert set(engine.catalog.names()) == BUILTINS and not engine.pipe.get_list_adapters()
    request = GenerationRequest(face=engine.prepare(selfie_bytes), style="sunny-cartoon", seed=1, steps=2)
    assert engine.generate([request])[0].image is not None


HANGUL = __import__("re").compile(r"[가-힣]")


def test_every_built_in_has_a_korean_title_and_description_and_english_stays_the_fallback() -> None:
    catalog = StyleCatalog.load(Path("no-such-styles-folder"), builtin=True)
    for style in catalog.styles.values():
        definition = style.definition
        assert isinstance(definition.display_name, dict) and isinstance(definition.description, dict), style.name
        assert HANGUL.search(definition.display_name["ko"]) and HANGUL.search(definition.description["ko"])
        # The CLI, the log and the database read English.
        assert definition.title == definition.display_name["en"]
        assert style.description == definition.description["en"]
    assert catalog.get("watercolor").definition.display_name["ko"] == "수채화"


def test_a_title_table_needs_english_and_locale_codes(tmp_path: Path) -> None:
    cases = {
        "no-en": ({"ko": "수채화"}, "needs an 'en' entry"),
        "bad-code": ({"en": "Ink", "korean": "잉크"}, "not a Discord locale code"),
        "empty": ({"en": "Ink", "ko": " "}, "the 'ko' entry is empty"),
    }
    for name, (title, message) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "style.json").write_text(json.dumps({"name": name, "display_name": title}))
        with pytest.raises(StyleError, match=message):
            load_style(folder)
    # One plain title still works, and a table round-trips through write_style.
    plain = tmp_path / "plain"
    write_style(plain, StyleDefinition(name="plain", display_name="Plain", description="One text."))
    assert load_style(plain).definition.title == "Plain" and load_style(plain).description == "One text."
    table = tmp_path / "table"
    write_style(table, StyleDefinition(name="table", display_name={"en": "Ink", "pt-BR": "Tinta"}))
    assert load_style(table).definition.display_name == {"en": "Ink", "pt-BR": "Tinta"}

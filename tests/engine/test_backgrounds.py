"""Named backgrounds reach SDXL as English fragments; free ones as typed; every prompt still fits CLIP."""

from __future__ import annotations

from pathlib import Path

from mmpp.inference.backgrounds import BACKGROUNDS, background_prompt
from mmpp.inference.styles import StyleCatalog


def test_every_named_background_fits_every_built_in_prompt() -> None:
    catalog = StyleCatalog.load(Path("no-such-styles-folder"), builtin=True)
    for style in catalog.styles.values():
        for name, fragment in BACKGROUNDS.items():
            prompt = style.definition.render_prompt(name, "head and shoulders")
            assert fragment in prompt and ("background" in fragment or "backdrop" in fragment)
            if "-" in name:
                assert name not in prompt, "the prompt gets English words, not the key"
            # CLIP reads 77 tokens; a prompt past that loses its end (the background) silently.
            assert len(prompt.split()) + prompt.count(",") < 70, (style.name, name)
            assert fragment.isascii()


def test_free_and_missing_backgrounds() -> None:
    assert background_prompt("teal") == "plain teal background"
    assert background_prompt("#1e90ff") == "plain #1e90ff background"
    assert background_prompt(None) == background_prompt("") == "simple background"
    assert background_prompt("night-sky") == BACKGROUNDS["night-sky"]

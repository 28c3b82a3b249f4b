"""Prompt templates from a stranger's style folder: only the three placeholders, plain. A format spec
would build a huge string, attribute or index access would render Python internals into the prompt."""

from __future__ import annotations

import pytest

from mmpp.inference.styles import StyleCatalog
from tests.engine.test_styles import broken, copy_styles


@pytest.mark.parametrize(
    "prompt",
    [
        "a portrait, {trigger:>300000000}",  # a 300 MB string per job
        "a portrait, {background.__class__.__mro__}",  # Python internals in the prompt
        "a portrait, {framing[0]}",
        "a portrait, {trigger!r}",
        "a portrait, {}",
        "a portrait, {0}",
        "a portrait, {trigger",
    ],
)
def test_a_template_beyond_plain_placeholders_rejects_that_style_alone(
    tiny_model_dir: object, tmp_path: object, prompt: str
) -> None:
    styles = copy_styles(tiny_model_dir, tmp_path)  # type: ignore[arg-type]
    path = broken(styles, "hostile", prompt=prompt)
    catalog = StyleCatalog.load(styles)
    assert catalog.names() == ["tiny-style"], "the rest of the catalog still loads"
    [error] = catalog.errors
    assert error.startswith(f"{path}: field 'prompt'") and "\n" not in error, error


def test_plain_placeholders_and_escaped_braces_still_render(tiny_model_dir: object, tmp_path: object) -> None:
    styles = copy_styles(tiny_model_dir, tmp_path)  # type: ignore[arg-type]
    broken(styles, "plain", prompt="{{logo}} portrait, {trigger}, {framing}, {background}")
    catalog = StyleCatalog.load(styles)
    assert not catalog.errors
    text = catalog.get("plain").definition.render_prompt("teal", "close-up")
    assert text.startswith("{logo} portrait") and "close-up" in text and "plain teal background" in text

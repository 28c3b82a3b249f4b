"""The style catalog: good styles load, a broken one is named with its file and field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmpp.inference.style_definition import StyleDefinition
from mmpp.inference.styles import StyleCatalog, UnknownStyleError
from tests.words import raises_worded


def copy_styles(tiny_model_dir: Path, tmp_path: Path) -> Path:
    styles = tmp_path / "styles"
    shutil.copytree(tiny_model_dir / "styles", styles)
    return styles


def broken(styles: Path, name: str, **changes: object) -> Path:
    folder = styles / name
    shutil.copytree(styles / "tiny-style", folder)
    definition = json.loads((folder / "style.json").read_text())
    definition.update(name=name, **changes)
    (folder / "style.json").write_text(json.dumps(definition))
    return folder / "style.json"


def test_the_tiny_style_loads(tiny_model_dir: Path) -> None:
    catalog = StyleCatalog.load(tiny_model_dir / "styles")
    assert catalog.names() == ["tiny-style"] and not catalog.errors
    assert Path(catalog.get("tiny-style").lora_path).is_file()


@pytest.mark.parametrize(
    ("changes", "field", "why"),
    [
        ({"steps": 0}, "steps", "greater than or equal to 1"),
        ({"scheduler": "magic"}, "scheduler", "'euler'"),
        ({"lora": {"source": "missing.safetensors"}}, "lora.source", "does not exist"),
        ({"prompt": "a {subject} portrait"}, "prompt", "unknown placeholder"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
    ],
)
def test_a_broken_style_is_rejected_naming_file_and_field(
    tiny_model_dir: Path, tmp_path: Path, changes: dict[str, object], field: str, why: str
) -> None:
    styles = copy_styles(tiny_model_dir, tmp_path)
    path = broken(styles, "broken", **changes)
    catalog = StyleCatalog.load(styles)
    assert catalog.names() == ["tiny-style"], "the good style still loads"
    [error] = catalog.errors
    assert error.startswith(f"{path}: field '{field}'") and why in error


def test_invalid_json_names_the_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    styles = copy_styles(tiny_model_dir, tmp_path)
    path = broken(styles, "bad-json")
    path.write_text('{"name": "bad-json",\n "steps": }')
    [error] = StyleCatalog.load(styles).errors
    assert error.startswith(f"{path}: not valid JSON (line 2")


def test_name_must_match_the_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    styles = copy_styles(tiny_model_dir, tmp_path)
    path = broken(styles, "folder-name")
    definition = json.loads(path.read_text())
    path.write_text(json.dumps({**definition, "name": "other"}))
    [error] = StyleCatalog.load(styles).errors
    assert "field 'name'" in error and "folder-name" in error


def test_unknown_style_lists_the_known_ones(tiny_model_dir: Path) -> None:
    with raises_worded(UnknownStyleError, "Styles available: tiny-style"):
        StyleCatalog.load(tiny_model_dir / "styles").get("simpsons")


def test_prompt_carries_trigger_and_background() -> None:
    style = StyleDefinition.model_validate(
        {"name": "toon", "trigger_words": ["yellowtoon"], "lora": {"source": "l.safetensors"},
         "prompt": "portrait of a person, {trigger} style, {background}"}
    )
    assert style.render_prompt("teal") == "portrait of a person, yellowtoon style, plain teal background"
    framed = style.model_copy(update={"prompt": "portrait, {trigger}, {framing}, {background}"})
    assert framed.render_prompt(None, "close-up") == "portrait, yellowtoon, close-up, simple background"
    assert "head and shoulders" in framed.render_prompt(None)
    assert style.render_prompt(None).endswith("simple background")
    bare = style.model_copy(update={"prompt": "portrait of a person"})
    assert bare.render_prompt(None).startswith("yellowtoon, ")

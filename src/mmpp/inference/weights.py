"""Where a style's LoRA is read from, safetensors only, on every path that loads one.

A style folder may come from a stranger, and a pickled `.bin` runs code when it is loaded. The style's
own check (`style_folder._check_lora`) refuses a named file that is not `.safetensors`, and a local
folder named without `weight_name` that holds none; the folder is checked again here, as it is loaded
(it may have changed since), with the style's file and field named. Every load
then passes `use_safetensors=True`, so diffusers never falls back to a pickle (a hub repo with only
a `.bin` is refused by diffusers itself). The default path (`loader`), the fast preset (`speed`) and
the compiled path (`compile`) all go through `lora_source`.
"""

from __future__ import annotations

from pathlib import Path

from mmpp.inference.style_folder import DEFINITION_FILE, WEIGHT_SUFFIX, Style, StyleError, check_holds_weights


def lora_source(style: Style, field: str, location: str, weight_name: str | None) -> tuple[str, str | None]:
    """The (folder or hub id, file name) to hand diffusers for the LoRA at `location` (a file, a
    folder or a hub id), which `style.json`'s `field` ("lora", "fast.lora") names."""
    path = Path(location)
    where = style.folder / DEFINITION_FILE
    if path.is_file():
        source, weight = str(path.parent), path.name
        named = f"{field}.source"
    else:
        source, weight = location, weight_name
        named = f"{field}.weight_name" if weight_name else f"{field}.source"
        if path.is_dir() and weight is None:
            check_holds_weights(where, named, path)  # again: the folder may have changed since the style loaded
    if weight is not None and not weight.endswith(WEIGHT_SUFFIX):
        raise StyleError(
            f"{where}: field '{named}': '{weight}' is not a .safetensors file; other weight formats can run "
            "code when loaded, so convert it"
        )
    return source, weight

"""The style catalogue: the built-in prompt styles plus every style in the styles folder, looked up by
name (a renamed built-in still answers to its old one). A broken style is kept out and reported, never
fatal to the rest; reading one folder is `style_folder.py`'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mmpp.errors import CodedError
from mmpp.inference.style_folder import DEFINITION_FILE, Style, StyleError, load_style
from mmpp.logs import log_event

log = logging.getLogger(__name__)

# Built-in styles that were renamed, old name -> new. Stored presets, channel overrides and Reroll
# buttons posted before the rename still say the old name; `StyleCatalog.canonical` is the one place
# that reads this table. A style folder of the old name in STYLES_DIR still wins: it is the operator's.
RENAMED_BUILTINS: dict[str, str] = {"simpsons": "sunny-cartoon"}


class UnknownStyleError(CodedError):
    """`known`: the names this catalog has, sorted."""

    code = "unknown_style"


def builtin_styles_dir() -> Path:
    """The prompt styles that ship inside the package (`inference/builtin_styles/NAME/style.json`)."""
    return Path(str(resources.files("mmpp.inference").joinpath("builtin_styles")))


@dataclass
class StyleCatalog:
    """Every style found in a folder. Broken ones are kept out and reported, not fatal to the rest."""

    styles: dict[str, Style] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, styles_dir: Path, *, builtin: bool = False) -> StyleCatalog:
        """The styles in `styles_dir`; with `builtin`, the shipped prompt styles first, each replaced by
        a folder of the same name in `styles_dir` (a trained LoRA beats the prompt-only version)."""
        catalog = cls()
        if builtin:
            catalog._load_folder(builtin_styles_dir(), builtin=True)
            if not styles_dir.is_dir():
                # A fresh install has no styles folder yet; the built-ins are enough to start.
                return catalog
        elif not styles_dir.is_dir():
            catalog.errors.append(f"{styles_dir}: styles folder does not exist")
            return catalog
        catalog._load_folder(styles_dir, builtin=False)
        return catalog

    def _load_folder(self, styles_dir: Path, *, builtin: bool) -> None:
        for folder in sorted(p for p in styles_dir.iterdir() if p.is_dir()):
            if not (folder / DEFINITION_FILE).exists():
                continue
            try:
                style = load_style(folder, builtin=builtin)
            except StyleError as exc:
                self.errors.append(exc.message)
                log_event(log, logging.ERROR, "style rejected", reason=exc.message)
                continue
            self.styles[style.name] = style

    def reject(self, name: str, reason: str) -> None:
        """Take a style out after loading, e.g. when its LoRA file turns out to be broken."""
        self.styles.pop(name, None)
        self.errors.append(reason)

    def canonical(self, name: str) -> str:
        """The name this catalog knows `name` by: itself when the catalog has such a style (an
        operator's own folder of a retired built-in name included), else the built-in's new name."""
        if name in self.styles:
            return name
        renamed = RENAMED_BUILTINS.get(name)
        return renamed if renamed is not None and renamed in self.styles else name

    def renamed(self) -> dict[str, str]:
        """Old name -> new name for every renamed built-in this catalog answers to by its new name only."""
        return {old: new for old in RENAMED_BUILTINS if (new := self.canonical(old)) != old}

    def get(self, name: str) -> Style:
        try:
            return self.styles[self.canonical(name)]
        except KeyError:
            raise UnknownStyleError(style=name, known=sorted(self.styles)) from None

    def names(self) -> list[str]:
        return sorted(self.styles)

    def __len__(self) -> int:
        return len(self.styles)

    def __contains__(self, name: object) -> bool:
        return name in self.styles

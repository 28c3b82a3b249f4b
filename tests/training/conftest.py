"""Small generated data sets and private copies of the tiny model for training tests.

Training runs at 32 px (the tiny model's native size is 64) to keep CPU steps short.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmpp.training.config import TrainConfig, make_config

RESOLUTION = 32


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread() -> object:
    """The tiny model's ops are too small to share: on a busy 2-core machine two torch threads spin
    on each other and run many times slower than one (see bench/train.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_images(
    folder: Path, count: int, *, size: tuple[int, int] = (48, 40), captions: bool = True, seed: int = 0
) -> Path:
    """Blocky random pictures (a few flat colours each) so there is something to overfit."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        blocks = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        image = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)
        image.save(folder / f"img{i}.png")
        rows.append({"file_name": f"img{i}.png", "text": f"a drawing of thing {i}"})
    if captions:
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


@pytest.fixture
def style_data(tmp_path: Path) -> Path:
    return write_images(tmp_path / "data", 4)


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """Trained styles go into a copy so the session's tiny model stays as built."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


ConfigFactory = Callable[..., TrainConfig]


@pytest.fixture
def make_train_config(tiny_model_dir: Path, style_data: Path, tmp_path: Path) -> ConfigFactory:
    def make(name: str = "trained", *, output: Path | None = None, **options: object) -> TrainConfig:
        fields: dict[str, object] = {
            "data": str(style_data),
            "style_name": name,
            "output": output or tmp_path / "styles" / name,
            "base_model": str(tiny_model_dir / "sdxl"),
            "resolution": RESOLUTION,
            "max_steps": 2,
            "learning_rate": 1e-2,
            "instance_token": "zwx style",
        }
        fields.update(options)
        return make_config(**fields)

    return make

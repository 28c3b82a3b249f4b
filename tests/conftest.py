"""Fixtures shared by every test folder: the tiny model, an engine on it, and real face photos."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from mmpp.inference.engine import Engine
from mmpp.inference.testing.tiny_model import make_tiny_model
from mmpp.settings import Settings, load_settings

# Tests see the built-in prompt styles only where they ask for them (`builtin_styles=True`), so every
# other catalog stays exactly the styles a test wrote. Subprocesses inherit this too.
os.environ["BUILTIN_STYLES"] = "false"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight SDXL tree, built once per run (a few seconds)."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_settings(tiny_model_dir: Path) -> Settings:
    return load_settings(None, model_dir=tiny_model_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def engine(tiny_settings: Settings) -> Engine:
    """One engine for the run, loaded through the production loading code."""
    return Engine.from_settings(tiny_settings)


def encode(image: Image.Image | np.ndarray, fmt: str = "JPEG", **params: object) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    """A real photo with one face (scikit-image ships it)."""
    return Image.fromarray(skdata.astronaut())


@pytest.fixture(scope="session")
def selfie_bytes(astronaut: Image.Image) -> bytes:
    return encode(astronaut, "JPEG", quality=92)


# Redis for the queue's remote backend (issue 12): fixtures live beside their helpers.
from tests.redis_server import private_redis, redis_url  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that runs the CLI in-process installs a handler on pytest's captured stderr; once that
    stream is closed, every later log line would print a "Logging error" traceback (slowly)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)

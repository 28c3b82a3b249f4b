"""Aspect-ratio bucketing: non-square pictures keep their shape, a batch is one size, and SDXL's
time ids say the original size, the crop corner and the size trained at."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmpp.training.buckets import bucket_sizes, bucket_step, nearest_bucket
from mmpp.training.trainer import Trainer
from tests.training.conftest import RESOLUTION, ConfigFactory

# (width, height) of the training pictures: 3:2 and 2:1 landscape, 2:3 portrait, square
SHAPES = {"landscape": (60, 40), "wide": (64, 32), "portrait": (40, 60), "square": (48, 48)}


def test_sdxl_buckets_are_multiples_of_64_of_at_most_1024_squared() -> None:
    sizes = bucket_sizes(1024, bucket_step(1024, 32))
    assert (1024, 1024) in sizes and (832, 1216) in sizes and (1216, 832) in sizes  # SDXL's own 2:3 and 3:2
    for height, width in sizes:
        assert height % 64 == 0 and width % 64 == 0
        assert 0.85 * 1024**2 <= height * width <= 1024**2
        assert max(height / width, width / height) <= 2.0
    assert nearest_bucket((2000, 3000), sizes) == (832, 1216)
    assert nearest_bucket((3000, 2000), sizes) == (1216, 832)
    assert nearest_bucket((500, 500), sizes) == (1024, 1024)


@pytest.fixture
def shaped_data(tmp_path: Path) -> Path:
    folder = tmp_path / "shaped"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for name, size in SHAPES.items():
        blocks = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST).save(folder / f"{name}.png")
        rows.append(json.dumps({"file_name": f"{name}.png", "text": f"a {name} drawing"}))
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return folder


def _kept(original: tuple[float, float], target: tuple[float, float]) -> float:
    """The share of the picture inside the crop when it is scaled to cover the target."""
    (oh, ow), (th, tw) = original, target
    scale = max(tw / ow, th / oh)
    return (th * tw) / (oh * scale * ow * scale)


@pytest.mark.parametrize("cache", [True, False])
def test_batches_are_one_bucket_and_time_ids_describe_the_crop(
    make_train_config: ConfigFactory, shaped_data: Path, cache: bool
) -> None:
    trainer = Trainer(make_train_config("bucketed", data=str(shaped_data), aspect_buckets=True, cache_latents=cache,
                                        train_batch_size=2, max_steps=4, report_to="none"))
    trainer.setup()
    sizes = dict(zip([Path(e.label).stem for e in trainer.dataset.instance.examples], trainer.dataset.instance.sizes,
                     strict=True))
    assert sizes["square"] == (RESOLUTION, RESOLUTION)
    for name in ("landscape", "wide"):
        height, width = sizes[name]
        assert width > height and height * width <= RESOLUTION**2
    assert sizes["portrait"][0] > sizes["portrait"][1]

    seen = 0
    for batch in trainer.dataloader:
        key = "latent_params" if cache else "pixel_values"
        tensor = batch[key]
        ids = batch["time_ids"]
        # One size per batch, and the time ids' target size is that size, in pixels.
        scale = trainer.parts.vae_scale_factor if cache else 1
        target = (tensor.shape[-2] * scale, tensor.shape[-1] * scale)
        assert all(tuple(row[4:6].tolist()) == target for row in ids)
        for row in ids:
            original, crop = tuple(row[0:2].tolist()), tuple(row[2:4].tolist())
            assert original in {(h, w) for w, h in SHAPES.values()}
            # Nearly all of each picture is kept (a square crop keeps 67% of 3:2, 50% of 2:1) ...
            assert _kept(original, target) >= 0.8
            # ... and the crop corner lies inside the scaled picture's margin.
            assert 0 <= crop[0] <= 1 + original[0] * max(target[1] / original[1], target[0] / original[0]) - target[0]
        seen += len(ids)
    assert seen == 6  # 2 landscape-ish (one batch), portrait and square each filled up to a batch of 2

    result = trainer.train(0)
    assert result.final_step == 4 and all(np.isfinite(result.losses))


def test_class_images_follow_the_instance_bucket(make_train_config: ConfigFactory, shaped_data: Path,
                                                 tmp_path: Path) -> None:
    from tests.training.conftest import write_images

    faces = write_images(tmp_path / "faces", 2, size=(40, 40), captions=False, seed=5)
    trainer = Trainer(make_train_config("bucketed-prior", data=str(shaped_data), aspect_buckets=True,
                                        prior_data=faces, train_batch_size=2, max_steps=3, report_to="none"))
    trainer.setup()
    for batch in trainer.dataloader:
        n = batch["num_instance"]
        assert batch["latent_params"].shape[0] == 2 * n  # instance and class samples stacked: one size
        assert (batch["time_ids"][:n, 4:6] == batch["time_ids"][n:, 4:6]).all()
    result = trainer.train(0)
    assert len(result.prior_losses) == 3

"""Prior preservation's class images, drawn by the base model when the folder has fewer than asked for.

As diffusers' DreamBooth scripts do (`--num_class_images`): the missing ones are drawn with the
class prompt in batches of `--sample-batch-size` and saved as `INDEX-SHA1.jpg`, so a second run
finds them and draws nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
from tqdm.auto import tqdm

from mmpp.training.data import image_files
from mmpp.training.models import Components


@torch.no_grad()
def draw_class_images(
    parts: Components,
    folder: Path,
    *,
    wanted: int,
    prompt: str,
    resolution: int,
    batch_size: int,
    steps: int,
    seed: int,
    device: torch.device,
    show_progress: bool = True,
) -> list[Path]:
    """Draw images until `folder` holds `wanted`; returns the new files."""
    folder.mkdir(parents=True, exist_ok=True)
    have = len(image_files(folder))
    missing = wanted - have
    if missing <= 0:
        return []
    pipe = StableDiffusionXLPipeline(
        vae=parts.vae, text_encoder=parts.text_encoders[0], text_encoder_2=parts.text_encoders[1],
        tokenizer=parts.tokenizers[0], tokenizer_2=parts.tokenizers[1], unet=parts.unet,
        scheduler=EulerDiscreteScheduler.from_config(parts.noise_scheduler.config), add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    # Seeded by (seed, how many there were) so a re-run after a crash draws new faces, not the same ones.
    generator = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + have)
    written: list[Path] = []
    with tqdm(total=missing, desc="drawing class images", unit="image", disable=not show_progress) as progress:
        while len(written) < missing:
            count = min(batch_size, missing - len(written))
            images = pipe(prompt=[prompt] * count, num_inference_steps=steps, height=resolution, width=resolution,
                          generator=generator).images
            for image in images:
                digest = hashlib.sha1(image.tobytes(), usedforsecurity=False).hexdigest()
                path = folder / f"{have + len(written):05d}-{digest}.jpg"
                image.save(path, quality=95)
                written.append(path)
            progress.update(count)
    return written

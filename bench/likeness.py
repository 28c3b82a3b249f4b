"""How much each style's portraits look like the selfie, as a face-search tool would see it.

    python bench/likeness.py --selfies DIR [--model-dir DIR] [--n 4] [--styles a,b] [--steps N] [--device auto]
    python bench/likeness.py --quick

For every style, draws `--n` portraits (seeds 0..n-1) of every selfie in DIR with the unlinkable
guard off, and reports per style: the dlib descriptor distance between selfie and portrait (below
0.6 is "the same person" to dlib, so the guard would redraw), the share of portraits with a face
the detector finds, the share that would be linkable, and seconds per portrait. A control row
measures the selfies against themselves mirrored (should be linkable, far below 0.6) in this run,
and the guard's own cost is given as a ratio to drawing one portrait.

--quick runs the same code on the tiny random-weight model (built in a temporary folder) with the
astronaut photo scikit-image ships as the only selfie: one portrait of two styles, 2 steps, on the CPU.
Its noise has no face, so its numbers only prove the bench runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/likeness.py` puts this folder first on sys.path, where bench/queue.py would shadow the
# standard library's `queue` (asyncio imports it): the folder leaves sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import io
import statistics
import tempfile
import time
from dataclasses import dataclass, field

import torch
from PIL import Image, ImageOps
from skimage import data as skdata

from mmpp.bot.words.errors import describe
from mmpp.inference import likeness
from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.engine import Engine, GenerationRequest
from mmpp.inference.preprocess import ImageRejected
from mmpp.inference.testing.tiny_model import make_tiny_model
from mmpp.settings import load_settings

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass
class Row:
    name: str
    distances: list[float] = field(default_factory=list)
    faceless: int = 0
    seconds: list[float] = field(default_factory=list)
    guard_seconds: list[float] = field(default_factory=list)

    def add(self, measured: likeness.Likeness) -> None:
        if measured.distance is None:
            self.faceless += 1
        else:
            self.distances.append(measured.distance)

    def cells(self) -> list[str]:
        total = len(self.distances) + self.faceless
        linkable = sum(d < likeness.SAME_PERSON for d in self.distances)
        mean = f"{statistics.fmean(self.distances):.3f}" if self.distances else "-"
        low = f"{min(self.distances):.3f}" if self.distances else "-"
        per = f"{statistics.fmean(self.seconds):.2f}" if self.seconds else "-"
        return [
            self.name, str(total), f"{len(self.distances) / total:.0%}" if total else "-", mean, low,
            f"{linkable / total:.0%}" if total else "-", per,
        ]


def load_selfies(folder: Path, engine: Engine) -> list[tuple[str, PreparedFace, likeness.Descriptor, Image.Image]]:
    """Each usable selfie: its name, what the engine draws from, its descriptor, the photo."""
    found = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES):
        data = path.read_bytes()
        try:
            face = engine.prepare(data)
        except ImageRejected as exc:
            print(f"skipped {path.name}: {describe(exc)}", file=sys.stderr)
            continue
        with Image.open(io.BytesIO(data)) as opened:
            photo = ImageOps.exif_transpose(opened).convert("RGB")
        selfie = likeness.descriptor(photo)
        if selfie is None:
            print(f"skipped {path.name}: dlib finds no face to describe", file=sys.stderr)
            continue
        found.append((path.name, face, selfie, photo))
    return found


def run(engine: Engine, selfie_dir: Path, styles: list[str], n: int, steps: int | None) -> list[Row]:
    selfies = load_selfies(selfie_dir, engine)
    if not selfies:
        raise SystemExit(f"No usable selfie in {selfie_dir}")
    control = Row("control: selfie vs itself mirrored")
    for _, _, selfie, photo in selfies:
        control.add(likeness.compare(selfie, ImageOps.mirror(photo)))
    rows = [control]
    for style in styles:
        row = Row(style)
        for _, face, selfie, _ in selfies:
            for seed in range(n):
                request = GenerationRequest(face=face, style=style, seed=seed, steps=steps, unlinkable=False)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                started = time.perf_counter()
                [result] = engine.generate([request])
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                row.seconds.append(time.perf_counter() - started)
                if result.image is None:  # refused by the safety check: nothing to measure
                    continue
                started = time.perf_counter()
                # What the guard does after each portrait: the selfie's crop and the portrait described.
                from_crop = likeness.descriptor(face.face, face_crop=True)
                row.add(likeness.compare(selfie if from_crop is None else from_crop, result.image))
                row.guard_seconds.append(time.perf_counter() - started)
        rows.append(row)
    return rows


def print_table(rows: list[Row], device: str) -> None:
    print(f"\nLikeness on {device}; dlib's same-person threshold {likeness.SAME_PERSON} (below: linkable)\n")
    header = ["style", "portraits", "face found", "mean distance", "min distance", "linkable", "s/portrait"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    drawn = [s for r in rows for s in r.seconds]
    guard = [s for r in rows for s in r.guard_seconds]
    if drawn and guard:
        ratio = statistics.fmean(guard) / statistics.fmean(drawn)
        print(f"\nguard check: {statistics.fmean(guard) * 1000:.0f} ms a portrait, "
              f"{ratio:.2f}x the time to draw one (same run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--selfies", type=Path, help="a folder of selfies (JPEG, PNG, WebP)")
    parser.add_argument("--model-dir", type=Path, help="a model folder; default: the configured sources")
    parser.add_argument("--styles", help="comma-separated style names; default: every style")
    parser.add_argument("--n", type=int, default=4, help="portraits per selfie and style")
    parser.add_argument("--steps", type=int, help="denoising steps; default: each style's own")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true",
                        help="the tiny model (or --model-dir's) and one scikit-image selfie, on the CPU")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        selfie_dir, model_dir, n, steps, device = args.selfies, args.model_dir, args.n, args.steps, args.device
        if args.quick:
            model_dir = args.model_dir or make_tiny_model(Path(tmp) / "tiny")
            selfie_dir = Path(tmp) / "selfies"
            selfie_dir.mkdir()
            Image.fromarray(skdata.astronaut()).save(selfie_dir / "astronaut.jpg", quality=92)
            n, steps, device = 1, 2, "cpu"
        if selfie_dir is None:
            parser.error("--selfies DIR is required (or --quick)")
        overrides: dict[str, object] = {"device": device, "builtin_styles": True}
        if model_dir is not None:
            overrides["model_dir"] = model_dir
        if device == "cpu":
            overrides["dtype"] = "float32"
        engine = Engine.from_settings(load_settings(None, **overrides))
        # --quick: a LoRA style and the default built-in are enough to prove the code runs.
        every = ["tiny-style", "sunny-cartoon"] if args.quick else engine.catalog.names()
        styles = args.styles.split(",") if args.styles else every
        print_table(run(engine, selfie_dir, styles, n, steps), str(engine.device))


if __name__ == "__main__":
    main()

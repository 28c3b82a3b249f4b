"""`training.png` beside the LoRA: loss (with its moving average) and learning rate per step.

Drawn with matplotlib where it is installed, else with Pillow, so a bare install gets a plot too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PLOT_FILE = "training.png"
_SIZE = (900, 600)


def smoothed(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average, as long as `values` (shorter windows at the start)."""
    data = np.asarray(values, dtype=np.float64)
    sums = np.cumsum(np.insert(data, 0, 0.0))
    starts = np.maximum(np.arange(1, len(data) + 1) - window, 0)
    return (sums[1:] - sums[starts]) / (np.arange(1, len(data) + 1) - starts)


def write_plot(path: Path, steps: Sequence[int], losses: Sequence[float], lrs: Sequence[float],
               title: str = "") -> Path:
    if not steps:
        raise ValueError("nothing to plot: no steps were trained")
    window = max(1, len(losses) // 20)
    try:
        _matplotlib(path, steps, losses, smoothed(losses, window), lrs, title)
    except ImportError:
        _pillow(path, steps, losses, smoothed(losses, window), lrs, title)
    return path


def _matplotlib(path: Path, steps: Sequence[int], losses: Sequence[float], average: np.ndarray,
                lrs: Sequence[float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on a training server
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(_SIZE[0] / 100, _SIZE[1] / 100), dpi=100,
                                         height_ratios=(2, 1))
    try:
        top.plot(steps, losses, color="#9bbcd9", linewidth=0.8, label="loss")
        top.plot(steps, average, color="#1f5f9f", linewidth=1.6, label="moving average")
        top.set_ylabel("loss")
        top.legend(loc="upper right")
        top.set_title(title)
        bottom.plot(steps, lrs, color="#c0622b")
        bottom.set_ylabel("learning rate")
        bottom.set_xlabel("step")
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)


def _pillow(path: Path, steps: Sequence[int], losses: Sequence[float], average: np.ndarray,
            lrs: Sequence[float], title: str) -> None:
    width, height = _SIZE
    image = Image.new("RGB", _SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((10, 8), title, fill="black", font=font)
    left, right = 90, width - 20
    panels = ((40, 380, "loss", [(losses, "#9bbcd9", 1), (average, "#1f5f9f", 2)]),
              (420, height - 40, "learning rate", [(lrs, "#c0622b", 2)]))
    x_low, x_high = min(steps), max(steps)
    for top, bottom, label, series in panels:
        values = np.concatenate([np.asarray(s, dtype=np.float64) for s, _, _ in series])
        low, high = float(values.min()), float(values.max())
        if high == low:
            low, high = low - abs(low) * 0.1 - 1e-12, high + abs(high) * 0.1 + 1e-12
        draw.rectangle((left, top, right, bottom), outline="black")
        draw.text((10, (top + bottom) // 2), label, fill="black", font=font)
        draw.text((left - 80, top), f"{high:.3g}", fill="black", font=font)
        draw.text((left - 80, bottom - 12), f"{low:.3g}", fill="black", font=font)

        def point(step: int, value: float, top: int = top, bottom: int = bottom, low: float = low,
                  high: float = high) -> tuple[float, float]:
            x = left + (right - left) * ((step - x_low) / (x_high - x_low) if x_high > x_low else 0.5)
            return x, bottom - (bottom - top) * (value - low) / (high - low)

        for values_, colour, line in series:
            points = [point(s, float(v)) for s, v in zip(steps, values_, strict=True)]
            if len(points) == 1:
                x, y = points[0]
                draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
            else:
                draw.line(points, fill=colour, width=line)
    draw.text((left, height - 30), f"step {x_low}", fill="black", font=font)
    draw.text((right - 70, height - 30), f"step {x_high}", fill="black", font=font)
    image.save(path)

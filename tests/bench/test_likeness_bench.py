"""`bench/likeness.py --quick` runs the operator's code end to end on the tiny model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_likeness_bench_reports_every_style(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "likeness.py"), "--quick"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("| ").split("|")] for line in table[1:])}
    # The yardstick works in this run: the selfie mirrored is the same person to dlib.
    portraits, found, mean, _, linkable, _ = rows["control: selfie vs itself mirrored"]
    assert (portraits, found, linkable) == ("1", "100%", "100%") and float(mean) < 0.6
    assert set(rows) == {"control: selfie vs itself mirrored", "tiny-style", "sunny-cartoon"}
    for style in ("tiny-style", "sunny-cartoon"):
        portraits, found, _, _, linkable, seconds = rows[style]
        # The tiny model draws noise: no face, never linkable; the seconds are measured.
        assert (portraits, found, linkable) == ("1", "0%", "0%") and float(seconds) > 0
    assert "guard check:" in done.stdout and "x the time to draw one" in done.stdout

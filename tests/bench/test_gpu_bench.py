"""`bench/gpu.py --quick` runs end to end on the CPU and prints every row the GPU run prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_gpu_bench_prints_every_row(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--quick"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # --device defaults to auto, resolved by the bot's own rule (inference.device), and said first.
    assert done.stdout.startswith("device ") and ": --device=auto: " in done.stdout.splitlines()[0]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    names = [line.split("|")[1].strip() for line in table[1:]]  # after the header row
    for expected in ("plain diffusers (same components)", "engine, no switch", "engine + channels_last",
                     "engine + fused QKV", "engine + compile default", "style switch under compile (hotswap)",
                     "fast preset (few-step LoRA stacked on the style)"):
        assert names.count(expected) == 1, (expected, names)  # --quick: batch 1 only
    assert any(name.startswith("time to first image") for name in names)
    switch = next(line for line in table if "style switch" in line)
    assert "recompiles: 0" in switch

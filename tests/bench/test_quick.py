"""Every script under bench/ runs in its quick mode, as a user runs it (`python bench/X.py --quick`),
exits 0 and prints its table: a benchmark the README quotes cannot rot unnoticed.

The scripts that draw share the session's tiny model (`--model-dir`); the ones that need PostgreSQL
or Redis use the local ones, as the rest of the suite does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if "--quick" in p.read_text())
# Imported by a script, not run: the memory half of bench/gpu.py and the settings both share.
NOT_SCRIPTS = {"gpu_memory", "gpu_setup"}
# Scripts that build no model; first_start times a model load of its own (a cold one).
NO_MODEL_DIR = {"conditioning", "db", "faces", "first_start"}


def table(stdout: str) -> list[list[str]]:
    """The markdown table rows after each header row, as cells."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in stdout.splitlines()
            if line.startswith("| ")]
    return [row for row in rows if not all(set(c) <= set("-:") for c in row)]


def check_bot(out: str) -> None:
    names = [row[0] for row in table(out)]
    assert "INTERACTION_CREATE to final edit" in names and "bot overhead (everything else)" in names


def check_conditioning(out: str) -> None:
    assert "room edges absent from the grey room, bookshelf" in out and "mask IoU against the true cut-out" in out


def check_db(out: str) -> None:
    lines = out.splitlines()
    assert any(line.startswith("sqlite ") for line in lines) and "SQL per /profile" in out
    assert any(line.startswith("postgresql ") and "skipped" not in line for line in lines), out  # the local server


def check_engine(out: str) -> None:
    names = [row[0] for row in table(out)]
    assert {"bare diffusers call", "engine.generate", "safety check alone (one image)"} <= set(names)


def check_faces(out: str) -> None:
    assert "chosen: HOG+search+landmarks" in out and "small faces" in out


def check_faults(out: str) -> None:
    rows = {row[0]: row[1:] for row in table(out)[1:]}
    # The first fault is the one that rotted: members asking for a style the server did not offer.
    locked = next(cells for fault, cells in rows.items() if fault.startswith("SQLite locked"))
    assert locked[0] == locked[1] == "1" and locked[2] == "0", rows  # one member, told, nothing lost
    assert any(fault.startswith("decode workers killed") for fault in rows)
    assert "worker stopped with SIGTERM mid-batch" in rows  # the Redis path (redis-server is installed)


def check_first_start(out: str) -> None:
    assert any(row[0].startswith("wrong token refused") for row in table(out))
    # The bot that draws nothing never maps the ML stack (issue 27's light bot), the drawing one does.
    bots = {row[0]: row[-1] for row in table(out) if row[0].startswith(("does not draw", "draws"))}
    assert any(name.startswith("does not draw") and loaded == "no" for name, loaded in bots.items()), out


def check_gpu(out: str) -> None:
    # --device defaults to auto, resolved by the bot's own rule (mmpp.inference.device), and said first.
    assert out.startswith("device ") and ": --device=auto: " in out.splitlines()[0]
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    names = [line.split("|")[1].strip() for line in rows[1:]]  # after the header row
    for expected in ("plain diffusers (same components)", "engine, no switch", "engine + channels_last",
                     "engine + fused QKV", "engine + compile default", "style switch under compile (hotswap)",
                     "fast preset (few-step LoRA stacked on the style)"):
        assert names.count(expected) == 1, (expected, names)  # --quick: batch 1 only
    assert any(name.startswith("time to first image") for name in names)
    switch = next(line for line in rows if "style switch" in line)
    assert "recompiles: 0" in switch
    # The memory plans: each at batch 1 and its largest batch, its candidate sets, diffusers' options.
    from mmpp.inference.memory_plan import PLANS

    for plan in PLANS.values():
        plan_rows = [line for line in rows if line.split("|")[1].strip() == f"plan {plan.name}"]
        assert sorted(int(line.split("|")[2]) for line in plan_rows) == sorted({1, plan.max_batch}), plan.name
        assert all(line.split("|")[4].strip() != "-" for line in plan_rows), plan_rows  # seconds per image measured
        for images in (1, 2, 4):
            assert f"plan {plan.name}, set of {images}" in names
    for option in ("everything resident", "enable_model_cpu_offload", "enable_sequential_cpu_offload",
                   "enable_group_offload (block level, CUDA stream)"):
        assert f"plain diffusers, {option}" in names
    # The accounted table at full size, labelled as accounted.
    assert "Accounted at full size" in out
    accounted = {line.split("|")[1].strip(): line for line in rows if line.split("|")[2].strip().endswith(" GB")}
    assert set(accounted) == set(PLANS)


def check_likeness(out: str) -> None:
    rows = {cells[0]: cells[1:] for cells in table(out)[1:]}
    # The yardstick works in this run: the selfie mirrored is the same person to dlib.
    portraits, found, mean, _, linkable, _ = rows["control: selfie vs itself mirrored"]
    assert (portraits, found, linkable) == ("1", "100%", "100%") and float(mean) < 0.6
    assert set(rows) == {"control: selfie vs itself mirrored", "tiny-style", "sunny-cartoon"}
    for style in ("tiny-style", "sunny-cartoon"):
        portraits, found, _, _, linkable, seconds = rows[style]
        # The tiny model draws noise: no face, never linkable; the seconds are measured.
        assert (portraits, found, linkable) == ("1", "0%", "0%") and float(seconds) > 0
    assert "guard check:" in out and "x the time to draw one" in out


def check_queue(out: str) -> None:
    names = [row[0] for row in table(out)]
    assert any(name.startswith("throughput, batching off") for name in names)
    assert any(name.startswith("throughput, batching on") for name in names)


def check_scale(out: str) -> None:
    names = [row[0] for row in table(out)]
    assert "jobs/s, two `mmpp worker` processes through Redis" in names
    assert "added by the Redis path (median / p99)" in names


def check_soak(out: str) -> None:
    rows = {row[0]: row[1:] for row in table(out)}
    assert rows["lost"] == ["0"], rows  # every request answered
    assert rows["delivered"] != ["0"] and "after 10" in rows


def check_train(out: str) -> None:
    names = [row[0] for row in table(out)[1:]]
    assert names == ["baseline (no cache, no checkpointing)", "caching + checkpointing"], names


CHECKS: dict[str, Callable[[str], None]] = {
    name.removeprefix("check_"): check for name, check in globals().items() if name.startswith("check_")
}


def test_every_script_has_a_quick_mode_and_a_check() -> None:
    every = {p.stem for p in (ROOT / "bench").glob("*.py")} - NOT_SCRIPTS
    assert set(SCRIPTS) == every == set(CHECKS), (SCRIPTS, every, set(CHECKS))


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_mode_runs_and_prints_its_table(script: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench" / f"{script}.py"), "--quick"]
    if script not in NO_MODEL_DIR:
        command += ["--model-dir", str(tiny_model_dir)]
    started = time.monotonic()
    # One torch thread: on the suite's 2 shared cores more threads spin-wait on each other (several times
    # slower: bench/train.py's --threads says so too), and a quick run proves the code, not the speed.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    print(f"bench/{script}.py --quick: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    CHECKS[script](done.stdout)

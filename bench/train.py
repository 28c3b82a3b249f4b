"""Training steps per second and peak memory: latent caching, gradient checkpointing, 8-bit AdamW and
aspect-ratio buckets.

    python bench/train.py [--model-dir DIR] [--steps N] [--batch-size N] [--resolution N] [--reps N]
                          [--rank N] [--device cpu|cuda]
    python bench/train.py --quick     # the baseline and one other row, 2 steps (what CI runs)

Without --model-dir it builds the tiny random-weight model in a temporary folder. Each
configuration trains in its own process (so one run's memory cannot inflate the next), in turn,
and is reported as a ratio to the baseline (no caching, no checkpointing). Steps/s counts the steps
after the warm-up ones. Peak memory covers the whole training loop (models and caches already
loaded): on a GPU torch.cuda.max_memory_allocated, on a CPU the process's peak resident set
(VmHWM, reset before the loop), which includes the loaded model and libraries; "training's own"
is that peak less what was in use when the loop started. "optimizer state" counts the bytes of the
optimizer's state tensors after training: where 8-bit AdamW saves memory (bitsandbytes keeps 32-bit
state for tensors under 4096 values, so the tiny model shows it only at --rank 64 or more). The
training pictures are of mixed shapes (3:2, 2:3, 1:1, 2:1): square crops in every row but the
bucketed one, whose images/s compares bucketing's throughput with the square crops'.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/train.py` puts this folder first on sys.path, where bench/queue.py would shadow the standard
# library's `queue` (asyncio imports it): the folder leaves sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
from PIL import Image

CONFIGS: dict[str, dict[str, bool | str]] = {
    "baseline (no cache, no checkpointing)": {"cache_latents": False, "gradient_checkpointing": False},
    "latent + text caching": {"cache_latents": True, "gradient_checkpointing": False},
    "gradient checkpointing": {"cache_latents": False, "gradient_checkpointing": True},
    "caching + checkpointing": {"cache_latents": True, "gradient_checkpointing": True},
    "caching + 8-bit AdamW": {"cache_latents": True, "gradient_checkpointing": False, "optimizer": "adamw8bit"},
    "caching + aspect buckets": {"cache_latents": True, "gradient_checkpointing": False, "aspect_buckets": True},
}
EIGHT_BIT = "caching + 8-bit AdamW"
SHAPES = ((3, 2), (2, 3), (1, 1), (2, 1))  # width:height of the training pictures, in turn
WARMUP_STEPS = 3


def write_data(folder: Path, count: int, size: int) -> Path:
    """Pictures of mixed shapes, the short side `size`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with (folder / "metadata.jsonl").open("w") as meta:
        for i in range(count):
            w, h = SHAPES[i % len(SHAPES)]
            shape = (size * w // min(w, h), size * h // min(w, h))
            blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(blocks).resize(shape, Image.Resampling.NEAREST).save(folder / f"{i}.png")
            meta.write(json.dumps({"file_name": f"{i}.png", "text": f"a drawing of thing {i}"}) + "\n")
    return folder


def _reset_peak_rss() -> bool:
    """Linux resets VmHWM to the current RSS when '5' is written to clear_refs."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    """One configuration, one process: prints a JSON line with its numbers."""
    import torch

    from mmpp.training.config import make_config
    from mmpp.training.trainer import StepInfo, Trainer

    torch.set_num_threads(args.threads)
    options = CONFIGS[args.child]
    config = make_config(
        data=str(args.data), style_name="bench", output=Path(args.work) / "bench", base_model=args.base_model,
        max_steps=WARMUP_STEPS + args.steps, train_batch_size=args.batch_size, resolution=args.resolution,
        checkpointing_steps=10**9, seed=0, rank=args.rank, report_to="none", **options,
    )
    cuda = torch.cuda.is_available()
    marks: dict[str, float] = {}

    def on_step(info: StepInfo) -> None:
        if cuda:
            torch.cuda.synchronize()
        if info.step == WARMUP_STEPS:
            marks["start"] = time.perf_counter()
        marks["end"] = time.perf_counter()

    trainer = Trainer(config, on_step=on_step)
    started = time.perf_counter()
    trainer.setup()
    setup_s = time.perf_counter() - started
    # Memory is measured from here (models loaded, caches built) to the end of training: on a CPU
    # freed memory often stays resident, so a reset after warm-up would hide the activations.
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        _reset_peak_rss()
        before = _status_mib("VmRSS")
    trainer.train(0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _status_mib("VmHWM")
    tensors = {id(v): v for state in trainer.optimizer.optimizer.state.values() for v in state.values()
               if isinstance(v, torch.Tensor)}  # bitsandbytes shares its quantisation maps: count once
    print(json.dumps({
        "optimizer_mib": sum(v.numel() * v.element_size() for v in tensors.values()) / 2**20,
        "steps_per_s": args.steps / (marks["end"] - marks["start"]),
        "peak_mib": peak,
        "training_mib": peak - before,
        "setup_s": setup_s,
        "device": str(trainer.accelerator.device),
        "resolution": trainer.resolution,
        "threads": torch.get_num_threads(),
    }))


def run_child(name: str, args: argparse.Namespace, base_model: str, data: Path, work: str) -> dict[str, float]:
    env = dict(os.environ)
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    command = [
        sys.executable, __file__, "--child", name, "--base-model", base_model, "--data", str(data),
        "--work", work, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
        "--threads", str(args.threads), "--rank", str(args.rank),
    ]
    if args.resolution:
        command += ["--resolution", str(args.resolution)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--steps", type=int, default=20, help="measured steps per configuration")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--resolution", type=int, help="default: the model's native resolution")
    parser.add_argument("--reps", type=int, default=1, help="runs per configuration (median reported)")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank (default 4, as mmpp train)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default 1: on a shared CPU, more threads spin-wait each other)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--base-model", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true",
                        help="the baseline and caching + checkpointing only, 2 steps (one process each)")
    args = parser.parse_args()
    if args.quick:
        args.steps = 2
    if args.child:
        child(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from mmpp.inference.testing.tiny_model import make_tiny_model

            model_dir = make_tiny_model(Path(tmp) / "model")
        data = write_data(Path(tmp) / "data", count=8, size=args.resolution or 64)
        base_model = str(Path(model_dir) / "sdxl")
        names = list(CONFIGS)[::3] if args.quick else list(CONFIGS)  # quick: the baseline, caching + checkpointing
        skipped = _eight_bit_problem(args)
        if skipped and EIGHT_BIT in names:
            names.remove(EIGHT_BIT)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for _ in range(args.reps):
            for name in names:  # interleaved, so drift in machine load spreads over every row
                runs[name].append(run_child(name, args, base_model, data, tempfile.mkdtemp(dir=tmp)))

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    first = runs[next(iter(CONFIGS))][0]
    base_speed = median(next(iter(CONFIGS)), "steps_per_s")
    base_peak = median(next(iter(CONFIGS)), "peak_mib")
    base_own = max(median(next(iter(CONFIGS)), "training_mib"), 1e-9)
    memory = "peak CUDA MiB" if str(first["device"]).startswith("cuda") else "peak RSS MiB"
    threads = f", {first['threads']} CPU thread(s)" if memory == "peak RSS MiB" else ""
    print(f"\nTraining benchmark: {first['device']}{threads}, {first['resolution']}px, batch {args.batch_size}, "
          f"{args.steps} measured steps after {WARMUP_STEPS} warm-up, median of {args.reps} run(s)\n")
    base_optimizer = max(median(next(iter(CONFIGS)), "optimizer_mib"), 1e-12)
    print(f"| configuration | steps/s | × baseline | images/s | {memory} | × baseline | training's own MiB "
          "| × baseline | optimizer state MiB | × baseline | setup s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in runs:
        speed, peak, own = median(name, "steps_per_s"), median(name, "peak_mib"), median(name, "training_mib")
        optimizer = median(name, "optimizer_mib")
        print(f"| {name} | {speed:.2f} | {speed / base_speed:.2f} | {speed * args.batch_size:.1f} | {peak:.0f} | "
              f"{peak / base_peak:.2f} | {own:.0f} | {own / base_own:.2f} | {optimizer:.3f} | "
              f"{optimizer / base_optimizer:.2f} | {median(name, 'setup_s'):.1f} |")
    if skipped:
        print(f"\n{EIGHT_BIT}: not measured, {skipped}")


def _eight_bit_problem(args: argparse.Namespace) -> str | None:
    from mmpp.inference.device import resolve_device
    from mmpp.training.optimizers import eight_bit_problem

    return eight_bit_problem(resolve_device(args.device, "--device").type)


if __name__ == "__main__":
    main()

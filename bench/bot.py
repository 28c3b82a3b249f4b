"""The bot's own cost per /profile, through the Discord stand-in, against the engine's time.

    python bench/bot.py [--jobs N] [--model-dir DIR]
    python bench/bot.py --quick       # 2 jobs (what CI runs)

Runs the real bot (discord.py client, SQLite file, tiny model) against the stand-in on 127.0.0.1,
plays one member at a time sending /profile with a selfie, and times INTERACTION_CREATE to the
final edit. The engine's time (face location + crop + diffusion) is measured around the same
calls in the same run (the crop and diffusion by the recorder the bot's runtime puts around its
engine, `mmpp.inference.testing.recording`); the bot's overhead is the rest: Discord round trips,
attachment download, database rows, queue hand-offs, progress edits and the PNG upload.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/bot.py` puts this folder first on sys.path, where queue.py would shadow the standard library's
# `queue` (asyncio imports it); the repository root takes its place, for the Discord stand-in under tests/.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

from skimage import data as skdata

from mmpp.bot.app.discord_endpoints import reset_endpoints
from mmpp.bot.app.runtime import BotRuntime
from mmpp.inference.testing.recording import RecordingEngine
from mmpp.inference.testing.tiny_model import make_tiny_model
from tests.bot.conftest import bot_settings, recorded
from tests.conftest import encode
from tests.discord_standin import StandIn


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(jobs: int, interval: float, model_dir: Path | None) -> None:
    selfie = encode(skdata.astronaut())
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = model_dir or make_tiny_model(Path(tmp) / "tiny")
        async with StandIn() as standin:
            guild = standin.add_guild("Bench")
            member = standin.add_member(guild, standin.add_user("bench"))
            settings = bot_settings(
                standin, model_dir, Path(tmp), progress_edit_interval_s=interval, user_daily_quota=0
            )
            runtime = BotRuntime(settings, client_options={"guild_ready_timeout": 0.05}, wrap_engine=recorded)
            await runtime.start()
            try:
                await runtime.wait_ready()
                services = runtime.services
                assert services is not None
                recorder = services.queue.preparer  # type: ignore[attr-defined]
                assert isinstance(recorder, RecordingEngine)
                engine: list[float] = []  # per job: prepare (crop, edges) + generate
                locate_s: list[float] = []
                locate = services.decoder.locate

                async def timed_locate(data: bytes) -> Any:
                    start = time.perf_counter()
                    try:
                        return await locate(data)
                    finally:
                        locate_s.append(time.perf_counter() - start)

                services.decoder.locate = timed_locate  # type: ignore[method-assign]
                e2e: list[float] = []
                edits: list[int] = []
                for i in range(jobs + 2):
                    prepared, generated, locate_before = (
                        len(recorder.prepare_s), len(recorder.generate_s), len(locate_s)
                    )
                    start = time.perf_counter()
                    interaction = await standin.send_slash_command(
                        "profile", user=member, attachments={"selfie": ("me.jpg", selfie)}
                    )
                    await interaction.wait_for_final_file(timeout=120)
                    elapsed = time.perf_counter() - start
                    # Let the handler close its log row before the next job: one job per member.
                    while services.queue.job_for(member.user.id) is not None or services.writes.busy:  # noqa: ASYNC110
                        await asyncio.sleep(0.001)
                    if i < 2:  # warm-up
                        del locate_s[locate_before:]
                        continue
                    engine.append(sum(recorder.prepare_s[prepared:]) + sum(recorder.generate_s[generated:]))
                    e2e.append(elapsed)
                    edits.append(sum(a.kind == "edit_original" for a in interaction.actions))
            finally:
                await runtime.stop()
                reset_endpoints()
    overhead = [total - eng - loc for total, eng, loc in zip(e2e, engine, locate_s, strict=True)]
    print(f"\nBot end-to-end through the Discord stand-in: tiny model on CPU, {jobs} jobs one after another, "
          f"progress edits at most every {interval}s ({statistics.median(edits):.0f} edits per job)\n")
    print("| what | median ms | p90 ms | share of end-to-end |")
    print("|---|---:|---:|---:|")
    total = statistics.median(e2e)
    rows = {
        "INTERACTION_CREATE to final edit": e2e,
        "engine: prepare (crop, edges) + generate": engine,
        "face location (decode, detect; worker process)": locate_s,
        "bot overhead (everything else)": overhead,
    }
    for name, values in rows.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1000:.1f} | {pct(values, 0.9) * 1000:.1f} | {median / total:.2f} |")
    verdict = "PASS" if statistics.median(overhead) < 0.050 else "FAIL"
    print(f"\nbot overhead median {statistics.median(overhead) * 1000:.1f} ms (target < 50 ms): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--edit-interval", type=float, default=1.2, help="PROGRESS_EDIT_INTERVAL_S")
    parser.add_argument("--model-dir", type=Path, help="a tiny model (default: one built here)")
    parser.add_argument("--quick", action="store_true", help="2 jobs")
    args = parser.parse_args()
    asyncio.run(run(2 if args.quick else args.jobs, args.edit_interval, args.model_dir))


if __name__ == "__main__":
    main()

"""Soak: N requests through the Discord stand-in on the tiny model; nobody lost, memory flat.

    python bench/soak.py [--n 1000] [--members 8]

Runs the real bot (discord.py client, SQLite file, tiny model) against the stand-in and plays
`--members` members at once, each sending one request after another: mostly good selfies, and a
mix of bad files (not a picture, a picture with no face), cancels and rerolls. Every request must
end in an answer the member sees (a portrait or an ephemeral message). It prints:

* acknowledgement latency (INTERACTION_CREATE to the interaction callback): median, p99, max;
* outcomes by kind: delivered, refused (with the reason), lost (must be 0);
* the bot process's RSS after 100 requests and after N, and their ratio (target: within 10 %).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/soak.py`, this folder would come first on sys.path and bot.py would shadow
# the `bot` package; the repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections import Counter

import numpy as np
import psutil
from PIL import Image
from skimage import data as skdata

from bot.discord_endpoints import reset_endpoints
from bot.runtime import BotRuntime
from inference.tiny_model import make_tiny_model
from tests.bot.conftest import bot_settings
from tests.conftest import encode
from tests.discord_standin import BotAction, FakeMember, InteractionRecord, StandIn

REASONS = {
    "isn't a picture": "not a picture",
    "not a picture": "not a picture",
    "couldn't find a face": "no face",
    "no face": "no face",
    "cancelled": "cancelled",
    "too busy": "line full",
    "already have a portrait": "one at a time",
    "being made right now": "one at a time",
    "still reading": "one at a time",
    "daily limit": "quota",
}


def reason_of(text: str) -> str:
    lowered = text.lower()
    return next((why for key, why in REASONS.items() if key.lower() in lowered), f"other: {text[:60]}")


def is_answer(action: BotAction) -> bool:
    """The end of a request as the member sees it: the portrait, or a message only they see, or
    the reply saying it was cancelled."""
    if action.has_files and bool(action.components):
        return True
    if action.message is not None and not action.loading and action.ephemeral:
        return True
    return "cancelled" in (action.content or "").lower()


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


class Soak:
    def __init__(self, standin: StandIn, runtime: BotRuntime, n: int) -> None:
        self.standin = standin
        self.runtime = runtime
        self.n = n
        self.started = 0
        self.acks: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.rss: dict[int, float] = {}
        self.selfie = encode(skdata.astronaut())
        noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        self.faceless = encode(Image.fromarray(noise), "PNG")

    def take(self) -> int | None:
        if self.started >= self.n:
            return None
        self.started += 1
        return self.started

    async def answered(self, interaction: InteractionRecord) -> BotAction | None:
        try:
            action = await interaction.wait_for(is_answer, timeout=120)
        except TimeoutError:
            self.outcomes["lost"] += 1
            return None
        callback = interaction.callback
        if callback is not None:
            self.acks.append(callback.at - interaction.created_at)
        if action.has_files:
            self.outcomes["delivered"] += 1
        else:
            self.outcomes[f"refused: {reason_of(action.content or '')}"] += 1
        return action

    async def member(self, member: FakeMember) -> None:
        last_final: BotAction | None = None
        last_record: InteractionRecord | None = None
        while (i := self.take()) is not None:
            kind = i % 10
            if kind == 3 and last_final is not None:
                reroll = next(c for c in last_final.custom_ids if c.startswith("mmpp:reroll"))
                interaction = await self.standin.send_component(last_final, reroll, user=member)
            else:
                data = {0: b"not a picture at all", 1: self.faceless}.get(kind, self.selfie)
                interaction = await self.standin.send_slash_command(
                    "profile", user=member, attachments={"selfie": (f"s{i}.jpg", data)}
                )
                if kind == 2:
                    await interaction.wait_for_callback(timeout=30)
                    cancel = await self.standin.send_slash_command("cancel", user=member)
                    await cancel.wait_for_message(timeout=30)
            action = await self.answered(interaction)
            if kind == 2:
                self.standin.forget(cancel)
            # The stand-in keeps everything it saw; it forgets what the soak no longer needs (all
            # but the message whose Reroll button comes next), so RSS measures the bot.
            if action is not None and action.has_files:
                if last_record is not None:
                    self.standin.forget(last_record)
                last_final, last_record = action, interaction
            else:
                self.standin.forget(interaction)
            self.standin.log.entries.clear()
            self.standin.state.channel_messages.clear()
            # The member's next request waits until the bot has closed this one (one job per member).
            services = self.runtime.services
            assert services is not None
            while services.queue.job_for(member.user.id) is not None or member.user.id in services.preparing:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            done = sum(self.outcomes.values())
            if done in (100, self.n) and done not in self.rss:
                self.rss[done] = rss_mb()


async def run(n: int, members: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_tiny_model(Path(tmp) / "tiny")
        async with StandIn() as standin:
            guild = standin.add_guild("Soak")
            players = [standin.add_member(guild, standin.add_user(f"soak{i}")) for i in range(members)]
            settings = bot_settings(
                standin, model_dir, Path(tmp), user_daily_quota=0, server_daily_quota=0,
                progress_edit_interval_s=0.5, reroll_ttl_s=60,
            )
            runtime = BotRuntime(settings, client_options={"guild_ready_timeout": 0.05})
            await runtime.start()
            soak = Soak(standin, runtime, n)
            start = time.perf_counter()
            try:
                await runtime.wait_ready()
                rss_start = rss_mb()
                await asyncio.gather(*(soak.member(m) for m in players))
            finally:
                await runtime.stop()
                reset_endpoints()
            elapsed = time.perf_counter() - start
    acks = sorted(soak.acks)
    p99 = acks[min(len(acks) - 1, int(0.99 * len(acks)))]
    print(f"\nSoak through the Discord stand-in: {n} requests from {members} members at once, tiny model on CPU, "
          f"{elapsed:.0f} s\n")
    print("| acknowledgement | median ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|")
    print(f"| INTERACTION_CREATE to callback | {statistics.median(acks) * 1000:.0f} | {p99 * 1000:.0f} "
          f"| {acks[-1] * 1000:.0f} |\n")
    print("| outcome | requests |")
    print("|---|---:|")
    soak.outcomes.setdefault("lost", 0)
    for outcome, count in sorted(soak.outcomes.items()):
        print(f"| {outcome} | {count} |")
    at_100 = soak.rss.get(100, float("nan"))
    at_n = soak.rss.get(n, float("nan"))
    print("\n| RSS | MB | ratio to after 100 |")
    print("|---|---:|---:|")
    print(f"| after start | {rss_start:.0f} | {rss_start / at_100:.3f} |")
    print(f"| after 100 | {at_100:.0f} | 1.000 |")
    print(f"| after {n} | {at_n:.0f} | {at_n / at_100:.3f} |")
    flat = at_n / at_100 <= 1.10
    print(f"\nlost {soak.outcomes['lost']} (target 0); RSS after {n} within 10 % of after 100: "
          f"{'PASS' if flat and not soak.outcomes['lost'] else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="requests in all (at least 100)")
    parser.add_argument("--members", type=int, default=8, help="members sending at the same time")
    args = parser.parse_args()
    asyncio.run(run(max(100, args.n), args.members))


if __name__ == "__main__":
    main()

"""Soak: N requests through the Discord stand-in on the tiny model; nobody lost, memory flat.

    python bench/soak.py [--n 1000] [--members 8] [--model-dir DIR]
    python bench/soak.py --quick      # 10 requests from 2 members, RSS every 5 (what CI runs)

Runs `mmpp bot` as an operator does (its own process, bot.env, SQLite file, tiny model) against
the stand-in, which runs in this process, and plays `--members` members at once, each sending one
request after another: mostly good selfies, and a mix of bad files (not a picture, a picture with
no face), cancels and rerolls. Every request must end in an answer the member sees (a portrait or
an ephemeral message). It prints:

* acknowledgement latency (INTERACTION_CREATE to the interaction callback): median, p99, max;
* outcomes by kind: delivered, refused (with the reason), lost (must be 0);
* the bot process's RSS after 100 requests and after N, and their ratio (target: within 10 %),
  and its face-search worker processes' RSS beside it.

The bot runs in a process of its own so that its RSS is the bot's alone: the stand-in keeps what
Discord would keep (messages, CDN files), which is not the bot's memory.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/soak.py` puts this folder first on sys.path, where queue.py would shadow the standard
# library's `queue` (asyncio imports it); the repository root takes its place, for the Discord stand-in under
# tests/.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter

import numpy as np
import psutil
from PIL import Image
from skimage import data as skdata

from mmpp.inference.testing.tiny_model import make_tiny_model
from tests.conftest import encode
from tests.discord_standin import BotAction, FakeMember, InteractionRecord, StandIn
from tests.discord_standin.harness import mmpp_bot_process

# The bot answers "one at a time" when a member asks again before it has closed their last
# request (it closes it a moment after the answer); the soak asks again then, as a member would.
BUSY = "one at a time"
REASONS = {
    "isn't a picture": "not a picture",
    "not a picture": "not a picture",
    "couldn't find a face": "no face",
    "no face": "no face",
    "cancelled": "cancelled",
    "too busy": "line full",
    "already have a portrait": BUSY,
    "being made right now": BUSY,
    "still reading": BUSY,
    "daily limit": "quota",
}


def reason_of(text: str) -> str:
    lowered = text.lower()
    return next((why for key, why in REASONS.items() if key.lower() in lowered), f"other: {text[:60]}")


def is_answer(action: BotAction) -> bool:
    """The end of a request as the member sees it: the portrait, or a message only they see that is
    not a progress update (every reply is private now), or the reply saying it was cancelled."""
    if action.has_files and bool(action.components):
        return True
    progress = (action.content or "").startswith(("⏳", "🎨"))
    if action.message is not None and not action.loading and action.ephemeral and not progress:
        return True
    return "cancelled" in (action.content or "").lower()


def rss_mb(pid: int) -> tuple[float, float]:
    """RSS of the bot process and, summed, of its child processes (face-search workers), in MB."""
    bot = psutil.Process(pid)
    children = sum(child.memory_info().rss for child in bot.children(recursive=True))
    return bot.memory_info().rss / 2**20, children / 2**20


class Soak:
    def __init__(self, standin: StandIn, bot_pid: int, n: int, every: int) -> None:
        self.standin = standin
        self.bot_pid = bot_pid
        self.n = n
        self.every = every  # RSS is read after each `every` requests
        self.asked_again = 0
        self.started = 0
        self.acks: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.rss: dict[int, tuple[float, float]] = {}
        self.selfie = encode(skdata.astronaut())
        noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        self.faceless = encode(Image.fromarray(noise), "PNG")

    def take(self) -> int | None:
        if self.started >= self.n:
            return None
        self.started += 1
        return self.started

    async def answered(self, interaction: InteractionRecord) -> BotAction | None:
        """The member's answer (None when lost, or when the bot had not yet closed their last request)."""
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
        elif (reason := reason_of(action.content or "")) == BUSY:
            self.asked_again += 1
            return None
        else:
            self.outcomes[f"refused: {reason}"] += 1
        return action

    async def send(self, member: FakeMember, i: int, last_final: BotAction | None) -> InteractionRecord:
        kind = i % 10
        if kind == 3 and last_final is not None:
            reroll = next(c for c in last_final.custom_ids if c.startswith("mmpp:reroll"))
            return await self.standin.send_component(last_final, reroll, user=member)
        data = {0: b"not a picture at all", 1: self.faceless}.get(kind, self.selfie)
        interaction = await self.standin.send_slash_command(
            "profile", user=member, attachments={"selfie": (f"s{i}.jpg", data)}
        )
        if kind == 2:
            await interaction.wait_for_callback(timeout=30)
            cancel = await self.standin.send_slash_command("cancel", user=member)
            await cancel.wait_for_message(timeout=30)
            self.standin.forget(cancel)
        return interaction

    async def member(self, member: FakeMember) -> None:
        last_final: BotAction | None = None
        last_record: InteractionRecord | None = None
        while (i := self.take()) is not None:
            while True:
                lost = self.outcomes["lost"]
                interaction = await self.send(member, i, last_final)
                action = await self.answered(interaction)
                if action is not None or self.outcomes["lost"] > lost:
                    break
                self.standin.forget(interaction)
                await asyncio.sleep(0.05)
            # The stand-in keeps everything it saw; it forgets what the soak no longer needs (all
            # but the message whose Reroll button comes next).
            if action is not None and action.has_files:
                if last_record is not None:
                    self.standin.forget(last_record)
                last_final, last_record = action, interaction
            else:
                self.standin.forget(interaction)
            self.standin.log.entries.clear()
            self.standin.state.channel_messages.clear()
            done = sum(self.outcomes.values())
            if (done % self.every == 0 or done == self.n) and done not in self.rss:
                self.rss[done] = rss_mb(self.bot_pid)


async def run(n: int, members: int, every: int, model_dir: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_dir = model_dir or make_tiny_model(folder / "tiny")
        async with StandIn() as standin:
            guild = standin.add_guild("Soak")
            players = [standin.add_member(guild, standin.add_user(f"soak{i}")) for i in range(members)]
            start = time.perf_counter()
            async with mmpp_bot_process(
                standin, folder, model_dir, DATABASE_URL=f"sqlite+aiosqlite:///{folder / 'mmpp.sqlite3'}",
                DEFAULT_STYLE="tiny-style", DEVICE="cpu", DTYPE="float32", PREVIEW_EVERY="2", USER_DAILY_QUOTA="0",
                SERVER_DAILY_QUOTA="0", PROGRESS_EDIT_INTERVAL_S="0.5", REROLL_TTL_S="60",
            ) as bot:
                rss_start = rss_mb(bot.pid)
                soak = Soak(standin, bot.pid, n, every)
                await asyncio.gather(*(soak.member(m) for m in players))
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
    nan = (float("nan"), float("nan"))
    (bot_100, workers_100), (bot_n, workers_n) = soak.rss.get(every, nan), soak.rss.get(n, nan)
    print(f"\nAsked again after a \"one at a time\" answer (the bot closing the last request): {soak.asked_again}")
    print(f"\n| RSS of `mmpp bot` | MB | ratio to after {every} | face-search workers, MB |")
    print("|---|---:|---:|---:|")
    print(f"| after start | {rss_start[0]:.0f} | {rss_start[0] / bot_100:.3f} | {rss_start[1]:.0f} |")
    print(f"| after {every} | {bot_100:.0f} | 1.000 | {workers_100:.0f} |")
    print(f"| after {n} | {bot_n:.0f} | {bot_n / bot_100:.3f} | {workers_n:.0f} |")
    series = ", ".join(f"{done}: {soak.rss[done][0]:.0f}" for done in sorted(soak.rss))
    print(f"\nRSS of `mmpp bot` in MB after each {every} requests: {series}")
    flat = bot_n / bot_100 <= 1.10
    print(f"\nlost {soak.outcomes['lost']} (target 0); RSS after {n} within 10 % of after {every}: "
          f"{'PASS' if flat and not soak.outcomes['lost'] else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="requests in all (at least 100)")
    parser.add_argument("--members", type=int, default=8, help="members sending at the same time")
    parser.add_argument("--model-dir", type=Path, help="a tiny model (default: one built here)")
    parser.add_argument("--quick", action="store_true", help="10 requests from 2 members, RSS after each 5")
    args = parser.parse_args()
    if args.quick:
        asyncio.run(run(10, 2, 5, args.model_dir))
    else:
        asyncio.run(run(max(100, args.n), args.members, 100, args.model_dir))


if __name__ == "__main__":
    main()

"""Faults, injected from outside, and what members notice: one table.

    python bench/faults.py [--members 3] [--model-dir DIR]
    python bench/faults.py --quick          # one member; the local rows and the first Redis row (what CI runs)

Each row injects one fault while `--members` members each run /profile, through the real bot
(discord.py client, tiny model, SQLite file) and the Discord stand-in; the Redis rows run the
bot with QUEUE_BACKEND=redis, a private `redis-server` and real `mmpp worker` processes, sealed
with QUEUE_SECRET (the intruder rows: a process with Redis access but not the secret). Columns:

* members affected: members whose request was in flight when the fault came;
* members told: of those, members who got their portrait or a message saying what happened;
* portraits lost: portraits the member saw and then lost (deleted, replaced) or never got although
  the GPU drew them;
* seconds to recover: from the fault to the last member's answer (a portrait or a message).

Targets: every member told, no portrait lost. The server's admin first lets members choose their
style (`/style set allow_member_choice:True`), as an admin of a server that offers several would:
an unconfigured server gives everyone the one default look, and the slow rows ask for a slow style.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/faults.py` puts this folder first on sys.path, where queue.py would shadow the standard
# library's `queue` (asyncio imports it); the repository root takes its place, for the Discord stand-in and
# the Redis helper under tests/.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cryptography.fernet import Fernet
from PIL import Image
from skimage import data as skdata

from mmpp.bot.app.discord_endpoints import reset_endpoints
from mmpp.bot.app.runtime import BotRuntime
from mmpp.bot.db.database import SQLITE_BUSY_TIMEOUT_S
from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.remote import transport as t
from mmpp.inference.testing.tiny_model import add_tiny_style, make_tiny_model
from tests.bot.conftest import bot_settings
from tests.conftest import encode
from tests.discord_standin import MANAGE_GUILD, BotAction, FakeMember, InteractionRecord, StandIn
from tests.redis_server import RedisProcess, worker_process

SLOW_STEPS = 40


@dataclass
class Row:
    fault: str
    affected: int
    told: int
    lost: int
    recover_s: float


def is_portrait(action: BotAction) -> bool:
    return action.has_files and bool(action.components)


def is_answer(action: BotAction) -> bool:
    return is_portrait(action) or (action.ephemeral and bool(action.content))


def portraits_lost(standin: StandIn, interactions: list[InteractionRecord]) -> int:
    """A portrait the member saw whose message is gone or no longer carries it."""
    lost = 0
    for interaction in interactions:
        for action in interaction.actions:
            if is_portrait(action) and action.message_id is not None:
                message = standin.message(action.message_id)
                if message.deleted or not message.attachments:
                    lost += 1
    return lost


async def outcome(name: str, standin: StandIn, interactions: list[InteractionRecord], fault_at: float,
                  timeout: float = 120, until: Callable[[BotAction], bool] = is_answer) -> Row:
    told, last = 0, fault_at
    for interaction in interactions:
        try:
            await interaction.wait_for(until, timeout=max(1.0, fault_at + timeout - time.monotonic()))
            told += 1
            last = max(last, time.monotonic())
        except TimeoutError:
            pass
    await asyncio.sleep(1.0)  # anything that would take a delivered portrait back has happened by now
    return Row(name, len(interactions), told, portraits_lost(standin, interactions), last - fault_at)


@asynccontextmanager
async def bot(model_dir: Path, workdir: Path, **overrides: object) -> AsyncIterator[tuple[StandIn, list[FakeMember],
                                                                                           BotRuntime]]:
    async with StandIn() as standin:
        guild = standin.add_guild("Art Club")
        admin = standin.add_member(guild, standin.add_user("ada"),
                                   roles=[standin.add_role(guild, "Admins", permissions=MANAGE_GUILD)])
        members = [standin.add_member(guild, standin.add_user(f"m{i}")) for i in range(8)]
        settings = bot_settings(standin, model_dir, workdir, user_daily_quota=100, **overrides)
        runtime = BotRuntime(settings, shutdown_grace_s=5.0, client_options={"guild_ready_timeout": 0.05})
        try:
            await runtime.start()
            await runtime.wait_ready(timeout=60)
            await standin.wait_for_commands("profile")
            await let_members_choose(standin, admin)
            yield standin, members, runtime
        finally:
            await runtime.stop()
            reset_endpoints()


async def let_members_choose(standin: StandIn, admin: FakeMember) -> None:
    """`/style set allow_member_choice:True`, sent by the admin through the bot's own command."""
    interaction = await standin.send_slash_command("style set", {"allow_member_choice": True}, user=admin)
    answer = await interaction.wait_for_message(timeout=30)
    if not (answer.content or "").startswith("Done."):
        raise RuntimeError(f"/style set did not answer as expected: {answer.content!r}")


async def profiles(standin: StandIn, members: list[FakeMember], selfie: bytes, style: str) -> list[InteractionRecord]:
    attachments = {"selfie": ("me.jpg", selfie)}
    return [await standin.send_slash_command("profile", {"style": style}, user=m, attachments=attachments)
            for m in members]


# --- faults on the bot's own machine ------------------------------------------------------------


async def database_locked(model_dir: Path, root: Path, selfie: bytes, n: int) -> Row:
    workdir = root / "db-locked"
    workdir.mkdir()
    async with bot(model_dir, workdir) as (standin, members, _):
        interactions = await profiles(standin, members[:n], selfie, "slow-style")
        for interaction in interactions:
            await interaction.wait_for_content("⏳", timeout=60)  # reserved and queued
        other = sqlite3.connect(workdir / "mmpp.sqlite3", isolation_level=None, check_same_thread=False)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock past the busy timeout
        fault_at = time.monotonic()
        await asyncio.sleep(SQLITE_BUSY_TIMEOUT_S + 5)
        other.execute("ROLLBACK")
        other.close()
        return await outcome(f"SQLite locked {SQLITE_BUSY_TIMEOUT_S + 5:.0f} s while drawing and delivering",
                             standin, interactions, fault_at)


async def decoder_killed(model_dir: Path, root: Path, selfie: bytes, n: int) -> Row:
    workdir = root / "decoder"
    workdir.mkdir()
    async with bot(model_dir, workdir) as (standin, members, runtime):
        assert runtime.services is not None
        pool = runtime.services.decoder._pool
        for pid in list(pool._processes or {}) if pool is not None else []:  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
        fault_at = time.monotonic()
        await asyncio.sleep(0.5)
        interactions = await profiles(standin, members[:n], selfie, "tiny-style")
        return await outcome("decode workers killed (SIGKILL), then uploads", standin, interactions, fault_at)


# --- faults between the bot and its GPU workers -------------------------------------------------


class Workers:
    def __init__(self, model_dir: Path, workdir: Path, redis_url: str, secret: str) -> None:
        self.model_dir, self.workdir, self.redis_url, self.secret = model_dir, workdir, redis_url, secret
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, clock_offset_s: float = 0.0) -> subprocess.Popen[bytes]:
        self.processes[name] = worker_process(
            self.model_dir, self.workdir, name, redis_url=self.redis_url, log=self.workdir / f"{name}.log",
            clock_offset_s=clock_offset_s, PREVIEW_EVERY="1000", QUEUE_SECRET=self.secret, LOG_LEVEL="WARNING",
        )
        return self.processes[name]

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


async def wait_workers(runtime: BotRuntime, *names: str) -> None:
    assert runtime.services is not None
    async with asyncio.timeout(180):
        while not all(f"remote:{n}" in {r.name for r in runtime.services.queue._crew.runners} for n in names):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def remote_rows(model_dir: Path, root: Path, selfie: bytes, n: int, quick: bool = False) -> list[Row]:
    workdir = root / "remote"
    workdir.mkdir()
    server = RedisProcess()
    server.start()
    secret = Fernet.generate_key().decode()
    workers = Workers(model_dir, workdir, server.url, secret)
    rows = []
    try:
        async with bot(model_dir, workdir, queue_backend="redis", redis_url=server.url, queue_secret=secret,
                       max_batch_size=4, batch_timeout_s=60.0) as (standin, members, runtime):
            # A worker stopped politely mid-batch, alone (no other worker to take its jobs).
            polite = workers.start("polite")
            await wait_workers(runtime, "polite")
            interactions = await profiles(standin, members[:n], selfie, "slow-style")
            await interactions[0].wait_for_content("🎨", timeout=60)
            polite.send_signal(signal.SIGTERM)
            rows.append(await outcome("worker stopped with SIGTERM mid-batch", standin, interactions,
                                      time.monotonic()))
            workers.stop_all()
            if quick:  # one worker start proves the Redis path; each further one costs a model load
                return rows

            # A worker an hour ahead, then one an hour behind.
            for offset in (3600.0, -3600.0):
                name = "ahead" if offset > 0 else "behind"
                workers.start(name, clock_offset_s=offset)
                await wait_workers(runtime, name)
                fault_at = time.monotonic()
                interactions = await profiles(standin, members[:n], selfie, "tiny-style")
                rows.append(await outcome(f"worker clock {offset / 3600:+.0f} h", standin, interactions, fault_at))
                workers.stop_all()

            # A worker frozen mid-batch (SIGSTOP) while another one is there.
            frozen, _ = workers.start("frozen"), workers.start("spare")
            await wait_workers(runtime, "frozen", "spare")
            interactions = await profiles(standin, members[:n], selfie, "slow-style")
            await interactions[0].wait_for_content("🎨", timeout=60)
            frozen.send_signal(signal.SIGSTOP)
            rows.append(await outcome("worker frozen mid-batch (SIGSTOP)", standin, interactions, time.monotonic()))
            workers.stop_all()

            # An intruder with Redis access writes "done" and a portrait of its own for each job.
            workers.start("honest")
            await wait_workers(runtime, "honest")
            interactions = await profiles(standin, members[:n], selfie, "slow-style")
            await interactions[0].wait_for_content("🎨", timeout=60)
            fault_at = time.monotonic()
            forge(server.url, runtime)
            row = await outcome("forged results written to Redis", standin, interactions, fault_at)
            forged_shown = sum(1 for i in interactions for a in i.actions if is_portrait(a) and red(a))
            rows.append(Row(row.fault, row.affected, row.told, row.lost + forged_shown, row.recover_s))
            workers.stop_all()
    finally:
        workers.stop_all()
        server.stop()
    return rows


def forge(url: str, runtime: BotRuntime) -> None:
    import io

    import redis

    assert runtime.services is not None
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(png, format="PNG")
    client = redis.Redis.from_url(url)
    try:
        for slot in list(runtime.services.queue._crew.runners):
            for job in getattr(slot, "running", []):
                # The strongest intruder: it found each job's keys (named by a tag it cannot compute).
                tag = slot.backend.seal.tag(job.id, job.attempt)
                client.set(t.result_key(tag), png.getvalue())
                client.xadd(t.events_key(tag), {"kind": "done", "takes": "[]", "seconds": "1"})
    finally:
        client.close()


def red(action: BotAction) -> bool:
    import io

    image = Image.open(io.BytesIO(action.files[0].data)).convert("RGB")
    return image.getpixel((32, 32)) == (255, 0, 0)


# --- intruders with Redis access but not QUEUE_SECRET (issue 29) ---------------------------------


def portraits_missing(interactions: list[InteractionRecord]) -> int:
    """Members who asked for a portrait and got none (a forged cancel, a batch handed to no worker)."""
    return sum(1 for i in interactions if not any(is_portrait(a) for a in i.actions))


def is_final(action: BotAction) -> bool:
    """A portrait, or a message that ends the request (not a place in line or a progress edit)."""
    return is_portrait(action) or (is_answer(action) and not (action.content or "").startswith(("⏳", "🎨")))


async def final_outcome(name: str, standin: StandIn, interactions: list[InteractionRecord], fault_at: float,
                        timeout: float = 120) -> Row:
    """As `outcome`, waiting for each request's end; a member who got no portrait counts as lost."""
    row = await outcome(name, standin, interactions, fault_at, timeout, until=is_final)
    row.lost += portraits_missing(interactions)
    return row


async def intruder_rows(model_dir: Path, root: Path, selfie: bytes, n: int) -> list[Row]:
    """A forged worker, a replayed payload and forged cancels, each against one honest worker."""
    import redis

    from mmpp.inference.queue.remote.sealing import Seal

    workdir = root / "intruders"
    workdir.mkdir()
    server = RedisProcess()
    server.start()
    secret = Fernet.generate_key().decode()
    workers = Workers(model_dir, workdir, server.url, secret)
    client = redis.Redis.from_url(server.url)
    rows = []
    try:
        async with bot(model_dir, workdir, queue_backend="redis", redis_url=server.url, queue_secret=secret,
                       max_batch_size=4, batch_timeout_s=60.0) as (standin, members, runtime):
            workers.start("honest")
            await wait_workers(runtime, "honest")

            # A forged worker: a heartbeat with the styles' fingerprint copied from Redis, kept fresh.
            fingerprint = Seal.read_unverified(client.get(t.CATALOG_KEY))["fingerprint"]
            beat = p.Heartbeat("intruder", "cuda", 8, fingerprint, float(client.time()[0])).to_wire()
            client.set(t.worker_key("intruder"), json.dumps(beat), px=5000)
            fault_at = time.monotonic()
            interactions = await profiles(standin, members[:n], selfie, "tiny-style")
            rows.append(await final_outcome("forged worker (heartbeat with a copied fingerprint)", standin,
                                            interactions, fault_at, timeout=90))
            client.delete(t.worker_key("intruder"))

            # A replay: the sealed payload of a batch already drawn, put back into the worker's queue.
            interactions = await profiles(standin, members[:n], selfie, "slow-style")
            async with asyncio.timeout(60):
                while not (keys := list(client.scan_iter(match="arq:job:*"))):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            stolen = t.deserialize(client.get(keys[0]))["a"][0]
            row = await final_outcome("payload replayed to a worker", standin, interactions, time.monotonic())
            assert runtime.services is not None
            pool = next(iter(runtime.services.queue._crew.runners)).backend.pool  # type: ignore[attr-defined]
            await pool.enqueue_job(t.BATCH_FUNCTION, stolen, _job_id="replayed", _queue_name=t.worker_queue("honest"))
            await asyncio.sleep(3.0)
            drawn_again = 0 if "why=replayed" in (workdir / "honest.log").read_text() else 1
            rows.append(Row(row.fault, row.affected, row.told, row.lost + drawn_again, row.recover_s))

            # Forged cancels: every job's cancel key found beside its stream, written while it draws.
            interactions = await profiles(standin, members[:n], selfie, "slow-style")
            await interactions[0].wait_for_content("🎨", timeout=60)
            fault_at = time.monotonic()
            for key in client.scan_iter(match="mmpp:ev:*"):
                client.set(key.decode().replace("mmpp:ev:", "mmpp:cancel:"), b"1", ex=60)
            rows.append(await final_outcome("forged cancel flags", standin, interactions, fault_at))
    finally:
        client.close()
        workers.stop_all()
        server.stop()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, help="a tiny model to copy (default: one built here)")
    parser.add_argument("--quick", action="store_true", help="one member, the local rows and the first Redis row")
    args = parser.parse_args()
    if args.quick:
        args.members = 1
    selfie = encode(Image.fromarray(skdata.astronaut()), "JPEG", quality=92)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.model_dir is not None:  # a copy: the slow style is added to it
            model_dir = Path(shutil.copytree(args.model_dir, root / "model"))
        else:
            model_dir = make_tiny_model(root / "model")
        add_tiny_style(model_dir, "slow-style", seed=3, steps=SLOW_STEPS)
        rows = [
            await database_locked(model_dir, root, selfie, args.members),
            await decoder_killed(model_dir, root, selfie, args.members),
        ]
        if shutil.which("redis-server"):
            rows += await remote_rows(model_dir, root, selfie, args.members, args.quick)
            if not args.quick:  # the intruders' own tests run in tests/queue/test_redis_intruders.py
                rows += await intruder_rows(model_dir, root, selfie, args.members)
        else:
            print("redis-server not installed: the Redis rows are skipped")
    print()
    print("| fault | members affected | members told | portraits lost | seconds to recover |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row.fault} | {row.affected} | {row.told} | {row.lost} | {row.recover_s:.1f} |")


if __name__ == "__main__":
    asyncio.run(main())

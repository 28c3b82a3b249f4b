"""What a server owner waits for on the way to a running bot: `./run`'s second start, and how soon a
wrong token is refused.

    python bench/first_start.py [--reps N] [--against SRC]

Rows, all measured in this run (medians, interleaved):
- `./run mmpp --version` with its install stamp matching, against `mmpp --version` alone: the script's
  cost on every start after the first.
- A wrong token refused by the token check (the Discord stand-in on 127.0.0.1), against the tiny model's
  load that used to come first: how much sooner the answer comes. On the real SDXL the load is minutes,
  and on a first start the 15 GB download comes before it too.
- The real `mmpp bot` started in a fresh process against the stand-in, warm (one untimed start first):
  seconds to its first call to Discord (the token check) and to READY, its main process's resident memory
  after READY (decode processes apart), and whether torch/diffusers/transformers were loaded by then. Two
  bots: one whose workers draw (`QUEUE_BACKEND=redis`, no `DEVICES`, a private redis-server) and one that
  draws (the tiny model, on the CPU). `--against SRC` runs the same bots on another checkout's `src/` too
  (`git worktree add /tmp/base COMMIT`, then `--against /tmp/base/src`), interleaved with this one.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/first_start.py` puts this folder first on sys.path, where queue.py would shadow the standard
# library's `queue` (asyncio imports it); the repository root takes its place, for the Discord stand-in and
# the setup helpers under tests/.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from mmpp.bot.app.discord_endpoints import override_endpoints
from mmpp.bot.app.invite import TokenRejected, check_token
from mmpp.inference.engine import Engine
from mmpp.inference.testing.tiny_model import make_tiny_model
from mmpp.settings import load_settings
from tests.bot.bot_process import ML_STACK, BotProcess, bot_env, first_call_s
from tests.discord_standin import StandIn
from tests.redis_server import QUEUE_SECRET, RedisProcess
from tests.setup.conftest import REPO, make_fake_venv, run_env, stamp_for

WRONG_TOKEN = "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs"


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run_rows(reps: int, tmp: Path) -> list[tuple[str, float, float]]:
    venv = make_fake_venv(tmp / "venv")
    (venv / ".mmpp-installed").write_text(stamp_for(venv) + "\n")
    env = run_env(venv)
    mmpp = [sys.executable, "-m", "mmpp.cli", "--version"]
    bare, script = [], []
    for _ in range(reps):
        bare.append(timed(lambda: subprocess.run(mmpp, env=env, check=True, capture_output=True)))
        script.append(timed(lambda: subprocess.run([str(REPO / "run"), "mmpp", "--version"], env=env, check=True,
                                                   capture_output=True)))
    assert not (venv / "pip-calls").exists(), "the stamp matched: nothing may be installed"
    return [("`mmpp --version` alone (baseline)", statistics.median(bare), 1.0),
            ("`./run mmpp --version`, stamp matching", statistics.median(script),
             statistics.median(script) / statistics.median(bare))]


async def refuse(standin: StandIn) -> None:
    with override_endpoints(standin.api_base, standin.gateway_url, cdn_base=standin.cdn_base):
        try:
            await check_token(WRONG_TOKEN)
        except TokenRejected:
            return
    raise AssertionError("the stand-in accepted a wrong token")


async def token_rows(reps: int, tmp: Path) -> list[tuple[str, float, float]]:
    model_dir = make_tiny_model(tmp / "tiny")
    settings = load_settings(None, model_dir=model_dir, device="cpu", dtype="float32")
    loads, checks = [], []
    async with StandIn() as standin:
        for _ in range(reps):
            loads.append(await asyncio.to_thread(timed, lambda: Engine.from_settings(settings)))
            started = time.perf_counter()
            await refuse(standin)
            checks.append(time.perf_counter() - started)
    load, check = statistics.median(loads), statistics.median(checks)
    return [("tiny model load, which a wrong token used to wait for (baseline)", load, 1.0),
            ("wrong token refused by the check before the load", check, check / load)]


Start = tuple[float, float, float, bool]


async def start_once(src: Path, model_dir: Path, folder: Path, redis_url: str | None) -> Start:
    """(first Discord call s, READY s, RSS MB after READY, ML stack loaded) for one start of one bot."""
    queue = {"QUEUE_BACKEND": "redis", "REDIS_URL": redis_url, "QUEUE_SECRET": QUEUE_SECRET} if redis_url else {}
    async with StandIn() as standin:
        standin.add_guild("Art Club")
        env = bot_env(standin, model_dir, folder, PYTHONPATH=str(src), BUILTIN_STYLES="false", **queue)
        bot = await BotProcess.launch(env, folder)
        try:
            await bot.wait_for_event("connected", timeout=300)
            ready = time.monotonic() - bot.launched
            rss, torch_loaded = bot.rss_mb(), bot.torch_mapped()
        finally:
            await bot.stop()
        first = first_call_s(standin, bot.launched)
    return first, ready, rss, torch_loaded


async def bot_rows(reps: int, tmp: Path, sources: dict[str, Path]) -> list[tuple[str, str, float, float, float, bool]]:
    model_dir = make_tiny_model(tmp / "bot-model")
    redis = RedisProcess()
    redis.start()
    rows = []
    try:
        kinds = (("does not draw (QUEUE_BACKEND=redis)", redis.url), ("draws (tiny model, CPU)", None))
        for k, (bot, redis_url) in enumerate(kinds):
            # One folder (and database) per bot and code, as a restarted bot finds its own.
            folders = {name: tmp / f"bot{k}-{i}" for i, name in enumerate(sources)}
            runs: dict[str, list[Start]] = {name: [] for name in sources}
            for name, src in sources.items():  # warm: the database exists, the files are in the page cache
                await start_once(src, model_dir, folders[name], redis_url)
            for _ in range(reps):
                for name, src in sources.items():
                    runs[name].append(await start_once(src, model_dir, folders[name], redis_url))
            for name, got in runs.items():
                rows.append((bot, name, statistics.median(r[0] for r in got), statistics.median(r[1] for r in got),
                             statistics.median(r[2] for r in got), any(r[3] for r in got)))
    finally:
        redis.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--against", type=Path, default=None,
                        help="another checkout's src/ folder whose bots run beside this one's (e.g. main's)")
    parser.add_argument("--quick", action="store_true", help="one rep (what CI runs)")
    args = parser.parse_args()
    if args.quick:
        args.reps = 1
    os.environ.setdefault("BUILTIN_STYLES", "false")
    sources = {"this checkout": REPO / "src"}
    if args.against is not None:
        sources[str(args.against)] = args.against.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_rows(args.reps, Path(tmp))
        rows += asyncio.run(token_rows(args.reps, Path(tmp)))
        bots = asyncio.run(bot_rows(args.reps, Path(tmp), sources))
    print(f"\nFirst start (median of {args.reps})\n")
    print("| measure | seconds | ratio to its baseline |")
    print("|---|---|---|")
    for name, seconds, ratio in rows:
        print(f"| {name} | {seconds:.3f} | {ratio:.2f} |")
    print(f"\nThe bot's start, warm (median of {args.reps}; ML stack loaded: {ML_STACK[0]} mapped by READY)\n")
    print("| bot | code | first call to Discord (s) | READY (s) | RSS after READY (MB) | ML stack loaded |")
    print("|---|---|---|---|---|---|")
    for bot, code, first, ready, rss, ml in bots:
        print(f"| {bot} | {code} | {first:.2f} | {ready:.2f} | {rss:.0f} | {'yes' if ml else 'no'} |")


if __name__ == "__main__":
    main()

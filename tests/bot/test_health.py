"""The metrics server an operator points Prometheus, a container health check or a load balancer at:
`/healthz` while the process lives, `/readyz` ready or the failing checks one per line, `/metrics`
with what the bot and a `mmpp worker` did, on a real started bot and a real worker process."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mmpp.bot.app.discord_endpoints import reset_endpoints
from mmpp.bot.app.runtime import BotRuntime, BotStartError
from tests.bot.conftest import World, bot_settings, closed_log_rows
from tests.bot.test_safety import profile
from tests.discord_standin import StandIn
from tests.redis_server import QUEUE_SECRET, SHARED, RedisProcess, flush, free_port, need_redis, worker_process
from tests.setup.test_deploy_files import page_names, queried_names


@pytest.fixture
def bot_overrides() -> dict[str, object]:
    return {"metrics_port": 0}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


async def fetch(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, url)


async def until(url: str, status: int, timeout: float) -> str:
    """The body once `url` answers `status`; fails with the last answer otherwise."""
    last: tuple[int, str] = (0, "")
    try:
        async with asyncio.timeout(timeout):
            while (last := await fetch(url))[0] != status:  # noqa: ASYNC110 (another process answers)
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"{url} never answered {status}; last: {last}") from None
    return last[1]


def sample(page: str, name: str, labels: str = "") -> float | None:
    """One sample's value on a scraped page (`labels` as written there: `outcome="delivered"`)."""
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)$"
    found = re.search(pattern, page, re.MULTILINE)
    return float(found.group(1)) if found else None


async def test_a_started_bot_is_alive_ready_and_counts_what_members_saw(world: World, selfie_bytes: bytes) -> None:
    health = world.runtime.health
    assert health is not None and health.url.startswith("http://127.0.0.1:")  # METRICS_HOST's default
    assert await fetch(f"{health.url}/healthz") == (200, "ok\n")
    assert await until(f"{health.url}/readyz", 200, timeout=10) == "ready\n"
    assert (await fetch(f"{health.url}/"))[0] == 404  # no longer the metrics page on every path

    # One progress edit fails once (discord.py tries it again): a REST error by its status.
    world.standin.inject_fault("PATCH", r"/messages/@original$", 500, times=1)
    assert await profile(world, world.members[0], selfie_bytes) == "posted"
    await closed_log_rows(world, 1)  # the outcome is counted where the log row is closed, just after

    status, page = await fetch(f"{health.url}/metrics")
    assert status == 200
    assert sample(page, "mmpp_bot_outcomes_total", 'outcome="delivered"') == 1
    assert sample(page, "mmpp_bot_outcomes_total", 'outcome="failed"') == 0
    acks = sample(page, "mmpp_bot_ack_seconds_count")
    assert acks is not None and acks >= 1  # the /profile, acknowledged at once
    assert (sample(page, "mmpp_bot_ack_seconds_sum") or 0) < 3 * acks  # within Discord's 3 s each
    assert sample(page, "mmpp_discord_rest_errors_total", 'status="500"') == 1
    assert sample(page, "mmpp_queue_depth") == 0 and sample(page, "mmpp_queue_servers_waiting") == 0
    assert sample(page, "mmpp_queue_workers") == 1  # the engine this bot draws with
    # The bot draws itself here, so it exports the drawing metrics a worker would.
    assert sample(page, "mmpp_worker_batches_total") == 1
    assert (sample(page, "mmpp_worker_picture_seconds_count") or 0) >= 1
    # Every metric deploy/'s dashboard and alerts ask for is on this page (the worker's too: it draws).
    assert sorted(queried_names() - page_names(page)) == []


async def test_a_dropped_gateway_makes_the_bot_unready_until_it_reconnects(world: World, selfie_bytes: bytes) -> None:
    health = world.runtime.health
    assert health is not None
    readyz = f"{health.url}/readyz"
    assert await until(readyz, 200, timeout=10) == "ready\n"

    # Discord's gateway goes away (close code 4000, which discord.py resumes after) and refuses the
    # bot's reconnects for as long as the outage lasts: a load balancer must stop counting on this bot.
    await world.standin.drop_gateway(refuse=True)
    reasons = await until(readyz, 503, timeout=10)
    assert reasons.startswith("gateway: "), reasons
    assert (await fetch(f"{health.url}/healthz")) == (200, "ok\n"), "unready, not dead: a restart fixes nothing"
    async with asyncio.timeout(20):
        while world.standin.gateway.refused == 0:  # noqa: ASYNC110 (the bot's backoff decides when)
            await asyncio.sleep(0.05)
    assert (await fetch(readyz))[0] == 503, "a refused reconnect is no connection"

    world.standin.allow_gateway()
    assert await until(readyz, 200, timeout=30) == "ready\n"
    await world.standin.wait_for_connection()
    # And the bot serves members again on its new connection.
    assert await profile(world, world.members[0], selfie_bytes) == "posted"


async def test_readiness_waits_for_a_worker_and_the_worker_serves_its_own_metrics(
    bot_model_dir: Path, tmp_path: Path, selfie_bytes: bytes
) -> None:
    need_redis()
    flush(SHARED)
    port = free_port()
    async with StandIn() as standin:
        guild = standin.add_guild("Night Shift")
        member = standin.add_member(guild, standin.add_user("dana"))
        settings = bot_settings(standin, bot_model_dir, tmp_path, queue_backend="redis", redis_url=SHARED,
                                queue_secret=QUEUE_SECRET, metrics_port=0)
        runtime = BotRuntime(settings, shutdown_grace_s=5.0, client_options={"guild_ready_timeout": 0.05})
        worker: subprocess.Popen[bytes] | None = None
        try:
            await runtime.start()
            await runtime.wait_ready(timeout=30)
            assert runtime.health is not None
            bot = runtime.health.url
            # Connected, database fine, nobody to draw: one line, naming what is missing.
            assert await until(f"{bot}/readyz", 503, timeout=10) == \
                "workers: no live worker (start `mmpp worker` where the GPU is)\n"
            assert await fetch(f"{bot}/healthz") == (200, "ok\n")  # alive all the same

            worker = start_worker(bot_model_dir, tmp_path, port)
            here = f"http://127.0.0.1:{port}"
            # Up before the models load, so an orchestrator can tell "loading" from "dead".
            await until(f"{here}/healthz", 200, timeout=60)
            assert await until(f"{here}/readyz", 200, timeout=180) == "ready\n", worker_log(tmp_path)
            assert await until(f"{bot}/readyz", 200, timeout=30) == "ready\n"

            interaction = await standin.send_slash_command(
                "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}
            )
            await interaction.wait_for(lambda a: any(f.filename.startswith("portrait-") for f in a.files),
                                       timeout=120)
            status, page = await fetch(f"{here}/metrics")
            assert status == 200
            assert sample(page, "mmpp_worker_batches_total") == 1
            assert (sample(page, "mmpp_worker_picture_seconds_count") or 0) >= 1
            assert sample(page, "mmpp_worker_unlinkable_redraws_total") == 0
            assert sample(page, "mmpp_worker_safety_refusals_total") == 0
            # A CPU worker has no GPU memory to report: the metric is declared, with no sample.
            assert "# TYPE mmpp_worker_gpu_peak_memory_bytes gauge" in page
            assert "mmpp_worker_gpu_peak_memory_bytes{" not in page
            # What deploy/ asks of workers, this worker serves.
            asked = {name for name in queried_names() if name.startswith("mmpp_worker_")}
            assert asked and sorted(asked - page_names(page)) == []

            worker.send_signal(signal.SIGTERM)
            assert worker.wait(60) == 0
            worker = None
            assert await until(f"{bot}/readyz", 503, timeout=30) == \
                "workers: no live worker (start `mmpp worker` where the GPU is)\n"
        finally:
            if worker is not None:
                worker.kill()
                worker.wait()
            await runtime.stop()
            reset_endpoints()
            flush(SHARED)
    assert runtime.health is None  # the stop closes it


async def test_a_worker_says_what_it_waits_for_and_when_its_redis_is_gone(
    bot_model_dir: Path, tmp_path: Path, private_redis: RedisProcess
) -> None:
    port = free_port()
    # No bot has published its styles: the worker waits (up to a minute) before loading anything.
    worker = start_worker(bot_model_dir, tmp_path, port, redis_url=private_redis.url)
    here = f"http://127.0.0.1:{port}"
    try:
        await until(f"{here}/healthz", 200, timeout=60)
        assert await until(f"{here}/readyz", 503, timeout=10) == "engine: loading\n"
        private_redis.stop()
        body = await until(f"{here}/readyz", 503, timeout=10)
        assert re.fullmatch(r"redis: unreachable \(\w+\)\nengine: loading\n", body), body
    finally:
        worker.kill()
        worker.wait()


async def test_a_taken_metrics_port_stops_the_bot_before_the_models(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with StandIn() as standin:
            # No model folder at all: the start stops on the port, before it would look for one.
            settings = bot_settings(standin, tmp_path / "no-such-model", tmp_path, metrics_port=port)
            runtime = BotRuntime(settings)
            with pytest.raises(BotStartError) as stopped:
                await runtime.start()
        reset_endpoints()
    assert stopped.value.message == \
        f"Cannot serve metrics on 127.0.0.1:{port}: Address already in use. Pick another METRICS_PORT."
    assert runtime.health is None


def test_a_taken_metrics_port_stops_the_worker_with_one_line(bot_model_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = start_worker(bot_model_dir, tmp_path, port, redis_url=SHARED)
        assert worker.wait(120) == 1
    assert worker_log(tmp_path).strip().splitlines()[-1] == (
        f"mmpp: Cannot serve metrics on 127.0.0.1:{port}: Address already in use. "
        "Pick another METRICS_PORT (one per worker on a machine)."
    )


def start_worker(model_dir: Path, workdir: Path, port: int, redis_url: str = SHARED) -> subprocess.Popen[bytes]:
    return worker_process(model_dir, workdir, "health-test", redis_url=redis_url, log=workdir / "worker.log",
                          strip=("DISCORD_", "MMPP_ENV_FILE"), METRICS_PORT=str(port), LOG_LEVEL="INFO")


def worker_log(workdir: Path) -> str:
    return (workdir / "worker.log").read_text(errors="replace")[-3000:]

"""What ships, run as shipped: the manual's Quick start (docs/install.md) typed as written, `mmpp worker` with only
REDIS_URL and QUEUE_SECRET, and every setting either run on its default by one of these starts or named here with the
reason it cannot be.

The environments below hold what a newcomer writes (the token, in bot.env as the manual says) plus
what a test must redirect: Discord's API, gateway and CDN to the stand-in, the hub's models to the
tiny model folder, `./run`'s install to this run's environment. `PATH`, `HOME` and the like pass
through as a shell has them; nothing else does (not even the tests' own `BUILTIN_STYLES=false`).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from mmpp.bot.app.discord_endpoints import apply_endpoints, current_endpoints, reset_endpoints
from mmpp.bot.app.invite import BotIdentity
from mmpp.bot.app.runtime import BotRuntime
from mmpp.bot.app.sharding import shard_options
from mmpp.inference.device import place, present_devices
from mmpp.inference.download import hub_needs
from mmpp.inference.loader import load_catalog
from mmpp.inference.queue.devices import resolve_devices
from mmpp.inference.queue.remote.transport import redis_settings
from mmpp.inference.testing.random_configs import PARAMETER_COUNTS
from mmpp.settings import Settings, load_settings
from tests.bot.conftest import bot_settings
from tests.discord_standin import StandIn
from tests.discord_standin.harness import bot_subprocess
from tests.docs.manual import DOCS, command_lines, runnable_blocks
from tests.redis_server import QUEUE_SECRET, RedisProcess, need_redis_server
from tests.scale.conftest import Cluster
from tests.setup.conftest import REPO, stamp_for

README = REPO / "README.md"
GPU_PAGE = DOCS / "gpu.md"
# What a login shell has whatever the project: passed through, everything else is left behind.
SHELL_VARIABLES = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR")
# The redirections each start gets, by setting name; the guard below holds these to a reason each.
BOT_REDIRECTED = ("DISCORD_TOKEN", "DISCORD_API_BASE", "DISCORD_GATEWAY_URL", "DISCORD_CDN_BASE", "MODEL_DIR")
WORKER_REDIRECTED = ("REDIS_URL", "QUEUE_SECRET", "MODEL_DIR")

# Every setting that one of the starts here runs on its shipped default, and which start reads it.
ON_DEFAULT = {
    "device": "all three: auto is the CPU here (the GPU branch runs wherever a GPU answers)",
    "dtype": "all three: auto is fp32 on the CPU (bf16 is a GPU's)",
    "devices": "bot: one engine on DEVICE",
    "builtin_styles": "bot and worker: the six prompt styles beside the model folder's",
    "default_style": "bot: /profile draws sunny-cartoon, a built-in",
    "attention": "all three", "channels_last": "all three", "fuse_qkv": "all three", "compile": "all three",
    "warmup": "all three", "fast_preset": "all three",
    "max_upload_bytes": "bot", "max_image_pixels": "bot and generate", "min_image_side": "bot and generate",
    "min_face_px": "bot and generate", "download_timeout_s": "bot", "max_concurrent_decodes": "bot",
    "max_concurrent_downloads": "bot", "preview_every": "bot and worker", "max_batch_size": "bot",
    "candidates": "bot: unset, one take per /profile on the CPU (two where a GPU draws)",
    "queue_capacity": "bot", "queue_job_deadline_s": "bot", "queue_batch_wait_s": "bot",
    "queue_backend": "bot: local", "worker_id": "worker: host-pid, the name it registers under",
    "shard_count": "bot: Discord's advice", "shard_ids": "bot: every shard",
    "database_url": "bot: mmpp.sqlite3 made and migrated in the working folder",
    "data_dir": "bot: the working folder, where mmpp.sqlite3 is made",
    "log_retention_days": "bot", "user_daily_quota": "bot", "server_daily_quota": "bot",
    "discord_test_guild_id": "bot: commands synced globally", "progress_edit_interval_s": "bot",
    "reroll_ttl_s": "bot", "reroll_cache_mb": "bot", "shutdown_grace_s": "bot: Ctrl-C stops it gracefully",
    "metrics_port": "bot: no metrics server", "log_level": "all three", "log_format": "all three: text",
    "styles_dir": "the empty environment: ./styles, absent on a fresh clone, leaves the built-ins",
    "gpu_memory_gb": "all three: unset asks the device; on the CPU that is the host plan (nothing capped)",
    "memory_plan": "all three: auto picks the plan from GPU_MEMORY_GB (the host plan on the CPU)",
    "queue_secret_file": "worker: unset, so QUEUE_SECRET (given) is the key",
    "batch_timeout_s": "worker: arq's limit for a batch, 900 s; the bot's own deadline adds a heartbeat",
    "server_max_candidates": "bot: 4, so a server's candidates stay its own as before",
    "servers_may_relax_safety": "bot: allowed, as before", "servers_may_post_by_default": "bot: allowed, as before",
    "servers_may_disable_guard": "bot: allowed, as before",
}
# Every other setting, with why no start here runs its default.
NOT_HERE = {
    "discord_token": "no default: the one line a newcomer writes",
    "discord_api_base": "Discord's own REST URL: the stand-in answers here",
    "discord_gateway_url": "Discord's own gateway: the stand-in answers here",
    "discord_cdn_base": "Discord's own CDN: the stand-in serves the selfies here",
    "model_dir": "unset means the hub's models, out of reach here: the tiny model folder stands in",
    "base_model": "a hub id (MODEL_DIR replaces it)", "vae": "a hub id (MODEL_DIR replaces it)",
    "controlnet": "a hub id (MODEL_DIR replaces it)", "ip_adapter": "a hub id (MODEL_DIR replaces it)",
    "ip_adapter_subfolder": "inside a hub repo (MODEL_DIR replaces it)",
    "ip_adapter_weight_name": "a hub file name (MODEL_DIR replaces it)",
    "image_encoder": "a hub id (MODEL_DIR replaces it)",
    "image_encoder_subfolder": "inside a hub repo (MODEL_DIR replaces it)",
    "safety_checker": "a hub id (MODEL_DIR replaces it; the tiny checker still runs on every portrait)",
    "redis_url": "database 0 of the machine's shared Redis: the worker gets a private redis-server",
    "queue_secret": "no default: the one line a Redis setup adds, the same on the bot and the worker",
    "metrics_host": "read only with METRICS_PORT, off by default (tests/bot/test_health.py serves on loopback)",
}


def shell_env(**redirected: str) -> dict[str, str]:
    return {**{k: os.environ[k] for k in SHELL_VARIABLES if k in os.environ}, **redirected}


def _torch_flavour() -> str:
    """The torch build `./run` wants on this machine (it asks `nvidia-smi`, as here)."""
    smi = shutil.which("nvidia-smi")
    return "cuda" if smi and subprocess.run([smi], capture_output=True).returncode == 0 else "cpu"


def quick_start_commands() -> list[str]:
    """The lines of the manual's Quick start blocks, in order, as a newcomer copies them (comments off)."""
    return [line for _, lines in runnable_blocks("quick-start") for line in lines]


def test_the_readmes_two_commands_are_the_quick_starts() -> None:
    """The README gives exactly two commands, and they are the manual's, which run below as written."""
    first = re.search(r"```bash\n(.*?)```", README.read_text(), re.DOTALL)
    assert first is not None
    readme = command_lines(first.group(1))
    assert readme == ["./run bot", "./run tests"]
    assert set(readme) <= set(quick_start_commands())


def test_the_manual_gpu_figure_is_the_accounted_one() -> None:
    """The weights every engine holds (SDXL, VAE, ControlNet, image encoder, IP-Adapter, safety checker),
    two bytes each in bf16: `PARAMETER_COUNTS` is checked against the production configs elsewhere."""
    total = sum(PARAMETER_COUNTS.values())
    words = " ".join(GPU_PAGE.read_text().split())
    assert (f"the bf16 weights alone take {total * 2 / 1e9:.1f} GB (accounted from the models' "
            f"{total / 1e9:.2f} billion parameters, not measured") in words


def test_every_setting_runs_on_its_default_here_or_says_why_not() -> None:
    fields = set(Settings.model_fields)
    assert not set(ON_DEFAULT) & set(NOT_HERE)
    assert sorted(fields - set(ON_DEFAULT) - set(NOT_HERE)) == [], "a new setting: run its default or say why not"
    assert sorted((set(ON_DEFAULT) | set(NOT_HERE)) - fields) == [], "settings that no longer exist"
    # The starts below set nothing but their redirections, and each redirection is excused above.
    for name in {*BOT_REDIRECTED, *WORKER_REDIRECTED}:
        assert name.lower() in NOT_HERE


async def test_an_empty_environment_resolves_what_a_start_resolves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # a fresh clone: no bot.env, no styles/
    settings = load_settings()
    assert settings == Settings(_env_file=None)  # type: ignore[call-arg]
    # Device and dtype, as every entry point resolves them.
    placement = place(settings.device, settings.dtype)
    assert str(placement.device) == present_devices()[0] and placement.why.startswith("DEVICE=auto: ")
    assert settings.queue_backend == "local" and resolve_devices(settings) == ["auto"]  # one engine, the bot's own
    # Paths and the models: every source is a hub id the first start fetches.
    assert [need.setting for need in hub_needs(settings.sources)] == [
        "BASE_MODEL", "VAE", "CONTROLNET", "IP_ADAPTER, IMAGE_ENCODER", "SAFETY_CHECKER"
    ]
    # Styles: ./styles does not exist yet; the built-ins serve, the default among them.
    catalog = load_catalog(settings)
    assert settings.sources.styles_dir == Path("styles") and catalog.errors == []
    assert sorted(catalog.names()) == ["animated-3d", "anime", "comic-ink", "pixel-art", "sunny-cartoon", "watercolor"]
    assert settings.default_style in catalog
    # The database: SQLite in the working folder, made and migrated.
    from mmpp.bot.db import open_database

    database = await open_database(settings.database_url, upgrade=True)
    await database.dispose()
    assert (tmp_path / "mmpp.sqlite3").is_file()
    # Discord's own endpoints, one shard process, Redis only parsed (the local queue never dials it).
    apply_endpoints(settings.discord_api_base, settings.discord_gateway_url, cdn_base=settings.discord_cdn_base)
    try:
        assert current_endpoints().api_base.startswith("https://discord.com/api/v")
        assert current_endpoints().pinned_gateway is None
    finally:
        reset_endpoints()
    assert shard_options(settings) == {}
    redis = redis_settings(settings.redis_url.get_secret_value())
    assert (redis.host, redis.port, redis.database) == ("127.0.0.1", 6379, 0)


async def _profile_ends_in_a_portrait(standin: StandIn, selfie: bytes) -> None:
    guild = standin.add_guild(f"Club {len(standin.gateway.sessions)}")
    member = standin.add_member(guild, standin.add_user(f"ana{len(standin.gateway.sessions)}"))
    interaction = await standin.send_slash_command(
        "profile", user=member, attachments={"selfie": ("me.jpg", selfie)}
    )
    final = await interaction.wait_for_final_file(timeout=120)
    # CANDIDATES unset on the CPU: one take per request.
    assert len([f for f in final.files if f.filename.startswith("portrait-")]) == 1


async def _run_bot_line(standin: StandIn, line: str, clone: Path, env: dict[str, str], selfie: bytes | None) -> str:
    """A `./run bot ...` line until connected (and a /profile, given a selfie), then Ctrl-C."""
    async with bot_subprocess(standin, shlex.split(line), cwd=clone, env=env, ready_timeout=240) as bot:
        await standin.wait_for_commands("profile", "style", timeout=30)
        if selfie is not None:
            await _profile_ends_in_a_portrait(standin, selfie)
        bot.send_signal(signal.SIGINT)
        returncode = await asyncio.wait_for(bot.wait(), timeout=60)
    output = (clone / "bot.log").read_text()
    (clone / "bot.log").rename(clone / f"bot-{len(standin.gateway.sessions)}.log")  # kept for a failure's reader
    assert returncode == 0, output
    return output


async def test_quick_start_as_written_on_the_defaults(
    tmp_path: Path, tiny_model_dir: Path, fake_venv: Path, selfie_bytes: bytes
) -> None:
    commands = quick_start_commands()
    assert commands[0] == 'echo "DISCORD_TOKEN=..." > bot.env'  # the placeholder a newcomer fills in
    # A fresh clone of the repo, installed (`./run` finds the venv's stamp and installs nothing).
    (fake_venv / ".mmpp-installed").write_text(stamp_for(fake_venv, _torch_flavour()) + "\n")
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("run", "pyproject.toml"):
        (clone / name).symlink_to(REPO / name)
    (clone / "selfie.jpg").write_bytes(selfie_bytes)  # the newcomer's own photo
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    ran: list[str] = []
    async with StandIn() as standin:
        identity = BotIdentity(standin.bot_user.username, standin.application_id)
        env = shell_env(
            MMPP_VENV=str(fake_venv), MMPP_PIP=str(fake_venv / "pip-log"),
            DISCORD_API_BASE=standin.api_base, DISCORD_GATEWAY_URL=standin.gateway_url,
            DISCORD_CDN_BASE=standin.cdn_base, MODEL_DIR=str(tiny_model_dir),
        )
        for line in commands:
            if line.startswith("./run tests"):
                assert line in ci  # CI runs it, as written: the tests cannot run themselves
                continue
            if line.startswith("./run bot"):
                # The first start of the bot serves a /profile; the tiny-model one only connects.
                first = not ran
                output = await _run_bot_line(standin, line, clone, env, selfie_bytes if first else None)
                ran.append(output)
                continue
            typed = line.replace("DISCORD_TOKEN=...", f"DISCORD_TOKEN={standin.token}")
            done = await asyncio.to_thread(
                subprocess.run, ["bash", "-c", typed], cwd=clone, env=env, capture_output=True, text=True,
                timeout=300,
            )
            assert done.returncode == 0, (line, done.stderr[-3000:])
            if " generate " in line:
                output = Path(shlex.split(line)[shlex.split(line).index("--output") + 1])
                with Image.open(clone / output) as portrait:
                    assert portrait.format == "PNG"
                assert "device chosen device=" in done.stderr and "DEVICE=auto" in done.stderr  # no --device
    assert len(ran) == 2 and (clone / ".tiny-model" / "sdxl").is_dir()
    for output in ran:
        assert "Traceback" not in output and standin.token not in output
        assert not re.search(r"^run: \[", output, re.MULTILINE)  # installed: no stage ran
        # The token is checked before the models load; Ctrl-C stopped the queue gracefully.
        assert output.index("token accepted") < output.index("pipeline loaded") < output.index("queue stopped")
        # One line says where the engine runs and why; DEVICE and DTYPE were never set.
        [chosen] = [line for line in output.splitlines() if " device chosen " in line]
        assert f"device={place('auto').device} " in chosen and 'why="DEVICE=auto: ' in chosen
        # The invite link is a line of its own; commands went to every server (no test guild).
        assert identity.invite_url in output.splitlines()
        assert "guild=global" in output and "default style missing" not in output
        # The start line says where everything lives: the env file read, the database, the models.
        [starting] = [line for line in output.splitlines() if " starting " in line]
        assert f'env_file="bot.env ({clone / "bot.env"}) and the environment"' in starting, starting
        assert "database=sqlite+aiosqlite:///mmpp.sqlite3 " in starting
        # MODEL_DIR from the environment, then the made tiny model's folder from --model-dir.
        assert f"model_cache={tiny_model_dir if output is ran[0] else '.tiny-model'} " in starting, starting
    # The default database was made in the working folder and logged the portrait.
    engine = create_engine(f"sqlite:///{clone / 'mmpp.sqlite3'}")
    with engine.connect() as connection:
        rows = connection.execute(text("select style, outcome from generation_log")).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [("sunny-cartoon", "delivered")]  # DEFAULT_STYLE, a built-in


def test_mmpp_worker_with_only_redis_url_refuses_in_one_line_saying_how_to_make_a_key(tmp_path: Path) -> None:
    # Loopback or not: a Redis on 127.0.0.1 may listen elsewhere too, and any local process reaches it.
    mmpp = Path(sys.executable).with_name("mmpp")
    done = subprocess.run([str(mmpp), "worker"], cwd=tmp_path, env=shell_env(REDIS_URL="redis://127.0.0.1:6379/13"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "mmpp: this worker needs QUEUE_SECRET, the same key on the bot and every worker (make one with: "
        'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")'
    ]


async def test_mmpp_worker_with_redis_url_and_queue_secret_draws_for_the_bot(
    tmp_path: Path, tiny_model_dir: Path, selfie_bytes: bytes
) -> None:
    need_redis_server()
    server = RedisProcess()
    server.start()
    workdir = tmp_path / "worker"
    workdir.mkdir()
    try:
        async with StandIn() as standin:
            # The bot's side as in the scale tests, but with the built-in styles a default worker has too.
            settings = bot_settings(standin, tiny_model_dir, tmp_path, queue_backend="redis",
                                    redis_url=server.url, queue_secret=QUEUE_SECRET, builtin_styles=True)
            runtime = BotRuntime(settings, client_options={"guild_ready_timeout": 0.05})
            cluster = Cluster(standin, runtime, server, tiny_model_dir, workdir, [], [], standin.add_user("dm"))
            try:
                await runtime.start()
                await runtime.wait_ready(timeout=30)
                mmpp = Path(sys.executable).with_name("mmpp")
                worker = subprocess.Popen(  # noqa: ASYNC220 (the scale harness keeps Popen handles)
                    [str(mmpp), "worker"], cwd=workdir,
                    env=shell_env(REDIS_URL=server.url, QUEUE_SECRET=QUEUE_SECRET, MODEL_DIR=str(tiny_model_dir)),
                    stdout=(workdir / "default.log").open("wb"), stderr=subprocess.STDOUT,
                )
                # WORKER_ID unset: the worker names itself host-pid.
                name = f"{socket.gethostname()}-{worker.pid}"
                cluster.workers[name] = worker
                (workdir / f"{name}.log").symlink_to(workdir / "default.log")
                await cluster.wait_workers(name, timeout=240)
                await standin.wait_for_commands("profile")
                await _profile_ends_in_a_portrait(standin, selfie_bytes)
            finally:
                cluster.stop_workers()
                await runtime.stop()
                reset_endpoints()
    finally:
        server.stop()
    output = (workdir / "default.log").read_text()
    assert worker.returncode == 0, output
    [chosen] = [line for line in output.splitlines() if " device chosen " in line]
    assert f"device={place('auto').device} " in chosen and 'why="DEVICE=auto: ' in chosen
    assert f"worker ready worker={name} " in output and "Traceback" not in output

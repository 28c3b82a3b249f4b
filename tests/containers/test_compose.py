"""compose.yaml as an operator runs it: every file and profile validates (`docker-compose config`),
and the scale-out profile (bot, PostgreSQL, Redis, a worker) comes up on the tiny model with every
service healthy, the bot logged in to the Discord stand-in. The test swaps only what this machine
cannot fetch: the images (MMPP_IMAGE, MMPP_POSTGRES_IMAGE, MMPP_REDIS_IMAGE) and, in an override file,
the addresses of the stand-in, which listens on the host's loopback. The default (the bot alone, SQLite
in its data volume) comes up healthy too."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from tests.containers.conftest import ROOT, docker, docker_works, need
from tests.discord_standin import StandIn
from tests.redis_server import free_port

FILES = (["compose.yaml"], ["compose.yaml", "compose.gpu.yaml"])
PROFILES = ([], ["--profile", "scale-out"])


def compose_command() -> list[str]:
    need("compose checks", docker_works())
    found = shutil.which("docker-compose")
    need("compose checks", None if found else "docker-compose is not installed")
    return [str(found)]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The compose files beside the two files an operator writes: bot.env and queue_secret."""
    for name in ("compose.yaml", "compose.gpu.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "bot.env").write_text("DISCORD_TOKEN=\n")
    (tmp_path / "queue_secret").write_text(Fernet.generate_key().decode() + "\n")
    return tmp_path


def config(project: Path, files: list[str], profile: list[str]) -> dict:
    argv = [*compose_command(), *(f"-f{name}" for name in files), *profile, "config"]
    answer = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, f"{' '.join(argv)}: {answer.stderr}"
    return yaml.safe_load(answer.stdout)


@pytest.mark.parametrize("profile", PROFILES, ids=["default", "scale-out"])
@pytest.mark.parametrize("files", FILES, ids=["cpu", "gpu"])
def test_every_compose_file_and_profile_validates(project: Path, files: list[str], profile: list[str]) -> None:
    services = config(project, files, profile)["services"]
    assert {name for name, s in services.items() if not s.get("profiles")} == {"bot"}  # the default: the bot alone
    for name, service in services.items():
        assert service["healthcheck"]["test"], f"{name} has no health check"
        for dependency in service.get("depends_on", {}).values():
            assert dependency["condition"] == "service_healthy", name
    gpus = {name for name, s in services.items() if s.get("deploy", {}).get("resources", {}).get("reservations")}
    assert gpus == ({"bot", "worker-0"} & set(services) if "compose.gpu.yaml" in files else set())
    if profile:  # docker-compose 1.x lists every service whatever the profile; Compose v2 only the profile's
        assert {"bot-scaled", "worker-0", "postgres", "redis"} <= set(services)
        assert services["postgres"]["image"].startswith("postgres:16.")
        assert services["redis"]["image"].startswith("redis:7.")
        assert services["worker-0"]["environment"]["QUEUE_SECRET_FILE"] == "/run/secrets/queue_secret"
        assert services["worker-0"]["secrets"][0]["source"] == "queue_secret"


async def compose(project: Path, name: str, env: dict[str, str], *args: str, profile: bool = True,
                  timeout: float = 600) -> str:
    argv = [*compose_command(), "-p", name, "-f", "compose.yaml", "-f", "compose.test.yaml",
            *(["--profile", "scale-out"] if profile else []), *args]
    process = await asyncio.create_subprocess_exec(*argv, cwd=project, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"docker-compose {' '.join(args)}: {text[-3000:]}"
    return text


def health(containers: list[str]) -> dict[str, str]:
    answer = docker("inspect", "--format", "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
                    *containers)
    return dict(line.lstrip("/").split(" ", 1) for line in answer.stdout.splitlines())


async def wait_healthy(project: Path, name: str, env: dict[str, str], services: int, *, profile: bool) -> float:
    """Seconds until every container of the project is healthy; fails with their logs after 5 minutes."""
    containers = (await compose(project, name, env, "ps", "-q", profile=profile)).split()
    assert len(containers) == services
    started, states = time.monotonic(), {}
    while time.monotonic() - started < 300:
        states = health(containers)
        if all(state == "healthy" for state in states.values()):
            return time.monotonic() - started
        await asyncio.sleep(3)
    logs = await compose(project, name, env, "logs", "--no-color", "--tail", "40", profile=profile)
    raise AssertionError(f"{states}\n{logs[-6000:]}")


def write_bot_env(project: Path, standin: StandIn) -> None:
    """bot.env as an operator writes it, pointed at the stand-in and at the tiny model in the cache volume."""
    (project / "bot.env").write_text(
        f"DISCORD_TOKEN={standin.token}\nDISCORD_API_BASE={standin.api_base}\n"
        f"DISCORD_GATEWAY_URL={standin.gateway_url}\nDISCORD_CDN_BASE={standin.cdn_base}\n"
        "MODEL_DIR=/var/lib/mmpp/models/tiny\nDEVICE=cpu\nBUILTIN_STYLES=false\n"
    )


async def test_the_default_starts_the_bot_alone_with_sqlite_in_its_volume(project: Path, cpu_image: str) -> None:
    name = f"mmppci{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "MMPP_IMAGE": cpu_image}
    async with StandIn() as standin:
        write_bot_env(project, standin)
        # The stand-in listens on the host's loopback, so the bot shares the host's network here.
        (project / "compose.test.yaml").write_text(yaml.safe_dump({"services": {
            "bot": {"network_mode": "host", "environment": {"METRICS_PORT": str(free_port())}}}}))
        try:
            await compose(project, name, env, "run", "--rm", "bot", "make-tiny-model", "/var/lib/mmpp/models/tiny",
                          profile=False)
            await compose(project, name, env, "up", "-d", "--no-build", profile=False)
            seconds = await wait_healthy(project, name, env, 1, profile=False)
            assert len(standin.gateway.sessions) >= 1  # the bot logged in
            files = await compose(project, name, env, "exec", "-T", "bot", "ls", "/var/lib/mmpp/data", profile=False)
            assert "mmpp.sqlite3" in files.split()
            print(f"embedded bot healthy in {seconds:.0f} s")
        finally:
            await compose(project, name, env, "down", "-v", "--remove-orphans", profile=False, timeout=180)


async def test_the_scale_out_profile_comes_up_healthy(
    project: Path, cpu_image: str, service_images: dict[str, str]
) -> None:
    name = f"mmppci{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "MMPP_IMAGE": cpu_image, **service_images}
    pg_port, redis_port, metrics_port = free_port(), free_port(), free_port()
    async with StandIn() as standin:
        write_bot_env(project, standin)
        # The bot shares the host's network (the stand-in) and reaches PostgreSQL and Redis at their
        # published ports; the worker stays on the project's network.
        (project / "compose.test.yaml").write_text(yaml.safe_dump({"services": {
            "bot-scaled": {"network_mode": "host", "environment": {
                "DATABASE_URL": f"postgresql+asyncpg://mmpp:mmpp@127.0.0.1:{pg_port}/mmpp",
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "METRICS_PORT": str(metrics_port)}},
            "worker-0": {"environment": {"MODEL_DIR": "/var/lib/mmpp/models/tiny", "DEVICE": "cpu",
                                         "BUILTIN_STYLES": "false"}},
            "postgres": {"ports": [f"127.0.0.1:{pg_port}:5432"]},
            "redis": {"ports": [f"127.0.0.1:{redis_port}:6379"]},
        }}))
        try:
            # The operator's trial run: the tiny model into the model cache volume.
            await compose(project, name, env, "run", "--rm", "--no-deps", "worker-0",
                          "make-tiny-model", "/var/lib/mmpp/models/tiny")
            await compose(project, name, env, "up", "-d", "--no-build", "bot-scaled", "worker-0")
            seconds = await wait_healthy(project, name, env, 4, profile=True)
            assert len(standin.gateway.sessions) >= 1  # the bot logged in
            print(f"scale-out healthy in {seconds:.0f} s")
        finally:
            await compose(project, name, env, "down", "-v", "--remove-orphans", timeout=180)

"""Redis for the tests: the machine's server on a database of our own, or a private server a test may
kill and restart (never the shared one: other people's tests use it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography.fernet import Fernet

from tests.need import need

SHARED = os.environ.get("MMPP_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
# QUEUE_SECRET for the tests' bots and workers: the Redis backend needs one wherever Redis runs.
QUEUE_SECRET = Fernet.generate_key().decode()


def _reachable(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def need_redis(url: str = SHARED) -> None:
    if not _reachable(url):
        need(f"no Redis answers at {url}", "MMPP_REQUIRE_REDIS")


def need_redis_server() -> None:
    """`redis-server` on PATH, for the tests that start (and kill) a private one."""
    if shutil.which("redis-server") is None:
        need("redis-server is not installed", "MMPP_REQUIRE_REDIS")


def flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The shared Redis, test database flushed before and after."""
    need_redis()
    flush(SHARED)
    yield SHARED
    flush(SHARED)


# `mmpp.cli` with `time.time` moved by argv[1] seconds: the wall clock that arq and the worker read is off,
# as on a machine whose clock is wrong; the monotonic clock is untouched, as there.
_SKEWED = (
    "import sys, time; real = time.time; time.time = lambda: real() + float(sys.argv[1]); "
    "from mmpp.cli import main; raise SystemExit(main(sys.argv[2:]))"
)


def worker_process(model_dir: Path, workdir: Path, worker_id: str, *, redis_url: str | None = None,
                   log: Path | None = None, strip: tuple[str, ...] = (), clock_offset_s: float = 0.0,
                   **env_lines: str) -> subprocess.Popen[bytes]:
    """`mmpp worker` in its own process, on the CPU with one thread, in `workdir`.

    `redis_url`: passed as --redis-url (None: the worker reads REDIS_URL from its environment).
    `log`: the file its output is appended to (None: discarded). `strip`: prefixes of this process's
    environment variables it does not inherit. `env_lines`: added to its environment (QUEUE_SECRET
    defaults to the tests' own). `clock_offset_s`: its wall clock is that far off (see _SKEWED)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(strip)}
    env.update({"DEVICE": "cpu", "DTYPE": "float32", "OMP_NUM_THREADS": "1", "QUEUE_SECRET": QUEUE_SECRET,
                **env_lines})
    args = ["worker", "--model-dir", str(model_dir)]
    args += ["--redis-url", redis_url] if redis_url is not None else []
    args += ["--worker-id", worker_id]
    command = [sys.executable, "-c", _SKEWED, str(clock_offset_s), *args] if clock_offset_s else \
        [sys.executable, "-m", "mmpp.cli", *args]
    if log is None:
        return subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with log.open("ab") as out:  # the child holds its own copy of the file
        return subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A private `redis-server` without persistence, so a restart loses everything, as it would."""

    def __init__(self, password: str | None = None) -> None:
        self.port = free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _reachable(self.url):
            if time.monotonic() > deadline:
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    need_redis_server()
    server = RedisProcess(password="s3cret-redis-pw")
    server.start()
    yield server
    server.stop()

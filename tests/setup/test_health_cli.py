"""`mmpp health`, the container health check: exit 0 when the local process's /readyz answers 200,
else 1 with one line saying why; and QUEUE_SECRET_FILE, how compose and systemd hand over the key."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmpp.settings import load_settings
from tests.redis_server import free_port


class Answers(http.server.BaseHTTPRequestHandler):
    ready = True

    def do_GET(self) -> None:
        if self.path == "/healthz":
            code, body = 200, "ok\n"
        elif self.path == "/readyz":
            code, body = (200, "ready\n") if Answers.ready else (503, "gateway: not connected\nworkers: none\n")
        else:
            code, body = 404, "not found\n"
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    """A server keeping the /healthz and /readyz contract the bot's and worker's metrics server keep."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_port
    httpd.shutdown()
    httpd.server_close()
    Answers.ready = True


def health(tmp_path: Path, port: int | None, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", **({"METRICS_PORT": str(port)} if port is not None else {})}
    return subprocess.run([sys.executable, "-m", "mmpp.cli", "health", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_ready_is_exit_0_and_silent(tmp_path: Path, server: int) -> None:
    answer = health(tmp_path, server)
    assert (answer.returncode, answer.stdout, answer.stderr) == (0, "", "")


def test_not_ready_is_exit_1_with_the_failing_checks_on_one_line(tmp_path: Path, server: int) -> None:
    Answers.ready = False
    answer = health(tmp_path, server)
    assert answer.returncode == 1
    assert answer.stderr == (f"mmpp health: http://127.0.0.1:{server}/readyz answered 503: "
                             "gateway: not connected; workers: none\n")
    assert health(tmp_path, server, "--live").returncode == 0  # alive all the same


def test_nothing_listening_or_no_port_is_one_line(tmp_path: Path, server: int) -> None:
    closed = free_port()  # bound and let go: nothing listens there
    answer = health(tmp_path, closed)
    assert answer.returncode == 1 and answer.stderr.count("\n") == 1
    assert answer.stderr.startswith(f"mmpp health: nothing answers at http://127.0.0.1:{closed}/readyz")
    unset = health(tmp_path, None)
    assert unset.returncode == 1 and "METRICS_PORT is not set" in unset.stderr


def test_the_queue_key_comes_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUEUE_SECRET", raising=False)
    secret = tmp_path / "queue_secret"
    secret.write_text("a-key-from-a-file\n")
    monkeypatch.setenv("QUEUE_SECRET_FILE", str(secret))
    assert load_settings(None).queue_secret.get_secret_value() == "a-key-from-a-file"
    monkeypatch.setenv("QUEUE_SECRET", "the-environment-wins")
    assert load_settings(None).queue_secret.get_secret_value() == "the-environment-wins"

"""The metrics server of `mmpp bot` and `mmpp worker`: Prometheus metrics, liveness and readiness.

The contract (what `mmpp health`, compose health checks and Kubernetes probes rely on):

- `GET /metrics`: the Prometheus text format of the process's registry.
- `GET /healthz`: 200 `ok` while the process lives and its server thread answers.
- `GET /readyz`: 200 `ready` when every check passes; otherwise 503 with one line per failing
  check, `NAME: why` (e.g. `gateway: not connected to Discord`), in the checks' order.
- Anything else: 404.

Checks are plain callables run on the server's thread at each request, returning None (fine) or
the reason in a few words; one that raises or takes longer than `CHECK_TIMEOUT_S` fails with that
as its reason, so a hung database makes the bot unready rather than the probe hang. Loopback by
default (METRICS_HOST): the numbers are harmless, but an operator should choose to publish them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from mmpp.health_cli import endpoint

# None: passing; a string: why not.
Check = Callable[[], str | None]
CHECK_TIMEOUT_S = 3.0


class HealthServer:
    """`/metrics`, `/healthz` and `/readyz` on a daemon thread; `close()` stops it."""

    def __init__(
        self, registry: CollectorRegistry, checks: dict[str, Check] | None = None, *,
        host: str = "127.0.0.1", port: int = 0,
    ) -> None:
        self.registry = registry
        self.checks: dict[str, Check] = dict(checks or {})
        # Checks run here, so one that hangs costs a thread of this pool, never the server's.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mmpp-health-check")
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="mmpp-metrics", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        # Where a wildcard address is served, its loopback, as `mmpp health` asks (IPv6 in brackets).
        return endpoint(str(self._server.server_address[0]), self.port, "")

    def failing(self) -> list[str]:
        """`NAME: why` for each failing check, in order; empty when ready."""
        futures = {name: self._pool.submit(_run, check) for name, check in self.checks.items()}
        lines = []
        for name, future in futures.items():
            try:
                why = future.result(timeout=CHECK_TIMEOUT_S)
            except FutureTimeout:
                why = f"no answer in {CHECK_TIMEOUT_S:.0f} s"
            if why is not None:
                lines.append(f"{name}: {why}")
        return lines

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _run(check: Check) -> str | None:
    try:
        return check()
    except Exception as exc:  # a broken check says so in /readyz rather than killing the request
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _handler(health: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(health.registry), content_type)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                failing = health.failing()
                if failing:
                    self._send(503, ("\n".join(failing) + "\n").encode())
                else:
                    self._send(200, b"ready\n")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every 15 s is not news; errors surface in /readyz and the process's own log

    return Handler


def on_loop(loop: asyncio.AbstractEventLoop, make: Callable[[], Coroutine[Any, Any, object]]) -> Check:
    """A check that runs a coroutine on the process's event loop (the database's connections live there)."""

    def check() -> str | None:
        if loop.is_closed():
            return "stopped"
        future = asyncio.run_coroutine_threadsafe(make(), loop)
        try:
            result = future.result(timeout=CHECK_TIMEOUT_S)
        except FutureTimeout:
            future.cancel()
            return f"no answer in {CHECK_TIMEOUT_S:.0f} s"
        return result if isinstance(result, str) else None

    return check

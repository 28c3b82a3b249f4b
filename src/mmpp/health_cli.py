"""`mmpp health`: the container health check. Asks this machine's own MMPP process (the bot or a
worker) whether it is ready, over its metrics server: GET http://METRICS_HOST:METRICS_PORT/readyz
answers 200 when ready, 503 with one line per failing check when not; /healthz answers 200 while
the process lives. Exit 0 when the answer is 200, else 1 with one line saying why (Docker reads 0 as
healthy and 1 as unhealthy). The standard library only: it runs every few seconds in every container.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import urllib.error
import urllib.request

# A process bound to every address is asked on loopback: it answers there too.
_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def register(subparsers: argparse._SubParsersAction) -> None:
    health = subparsers.add_parser(
        "health",
        help="exit 0 if this machine's bot or worker is ready (for container health checks)",
        description="Ask the local bot or worker whether it is ready, at http://METRICS_HOST:METRICS_PORT/readyz "
        "(or /healthz with --live). Exits 0 when it answers 200, else 1 with one line saying why.",
    )
    health.add_argument("--live", action="store_true", help="only check that the process answers (/healthz)")
    health.add_argument("--port", type=int, default=None, help="override METRICS_PORT")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer (default 5)")
    health.set_defaults(func=run)


def endpoint(host: str, port: int, path: str) -> str:
    host = _ANY.get(host, host)
    return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"


def check(url: str, timeout: float) -> str | None:
    """None when `url` answers 200; otherwise one line saying what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            answer.read(4096)
            return None
    except urllib.error.HTTPError as exc:
        body = exc.read(4096).decode("utf-8", "replace")
        reasons = "; ".join(line.strip() for line in body.splitlines() if line.strip())
        return f"{url} answered {exc.code}" + (f": {reasons}" if reasons else "")
    except urllib.error.URLError as exc:
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
        return f"nothing answers at {url} ({reason})"
    except (TimeoutError, http.client.HTTPException, OSError) as exc:
        return f"no answer from {url} ({exc or type(exc).__name__})"


def run(args: argparse.Namespace) -> int:
    from mmpp.settings import load_settings

    settings = load_settings(args.env_file)
    port = args.port if args.port is not None else settings.metrics_port
    if not port:
        print("mmpp health: METRICS_PORT is not set, so the process serves no health endpoint.", file=sys.stderr)
        return 1
    # METRICS_HOST (loopback unless set) is where the process listens, so where it is asked.
    host = str(getattr(settings, "metrics_host", None) or "127.0.0.1")
    problem = check(endpoint(host, port, "/healthz" if args.live else "/readyz"), args.timeout)
    if problem is None:
        return 0
    print(f"mmpp health: {problem}", file=sys.stderr)
    return 1

"""The bot's metrics server: `/metrics`, `/healthz`, and `/readyz` with three checks (the contract is
`mmpp.health`'s):

- `gateway`: connected to Discord, every shard of this process open;
- `database`: answers `SELECT 1`;
- `workers`: an engine loaded here, or at least one live `mmpp worker` (QUEUE_BACKEND=redis).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry

from mmpp.health import Check, HealthServer, on_loop

if TYPE_CHECKING:
    from mmpp.bot.app.app import MMPPBot
    from mmpp.bot.services import Services
    from mmpp.settings import Settings


class BotRuntime(Protocol):
    """What readiness reads of the running bot (`mmpp.bot.app.runtime.BotRuntime`, which serves it)."""

    settings: Settings
    bot: MMPPBot | None
    services: Services | None


def bot_checks(runtime: BotRuntime, loop: asyncio.AbstractEventLoop) -> dict[str, Check]:
    def gateway() -> str | None:
        bot = runtime.bot
        if bot is None:
            return "starting"
        if bot.is_closed():
            return "closed"
        if not bot.is_ready():
            return "not connected to Discord"
        down = sorted(shard_id for shard_id, shard in bot.shards.items() if shard.is_closed())
        return f"shard {', '.join(map(str, down))} disconnected" if down else None

    async def database() -> str | None:
        services = runtime.services
        if services is None:
            return "starting"
        try:
            await services.database.ping()
        except Exception as exc:  # whatever the driver raises, the probe gets one line
            return f"not answering ({type(exc).__name__})"
        return None

    def workers() -> str | None:
        services = runtime.services
        if services is None:
            return "starting"
        if services.queue.workers > 0:
            return None
        if services.settings.queue_backend == "redis":
            return "no live worker (start `mmpp worker` where the GPU is)"
        return "no engine loaded"

    return {"gateway": gateway, "database": on_loop(loop, database), "workers": workers}


def serve_metrics(runtime: BotRuntime, registry: CollectorRegistry) -> HealthServer:
    """Started from the event loop the bot runs on; raises `OSError` when the port is taken."""
    settings = runtime.settings
    assert settings.metrics_port is not None
    return HealthServer(registry, bot_checks(runtime, asyncio.get_running_loop()),
                        host=settings.metrics_host, port=settings.metrics_port)

"""How many takes one request draws: the server's `/style set candidates:`, else CANDIDATES, else
2 where the queue draws on a GPU (a second take costs little in the same batch) and 1 on the CPU
(where each take costs its full time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmpp.bot.db.options import MAX_TAKES
from mmpp.settings import Settings

if TYPE_CHECKING:
    from mmpp.bot.services import Services
    from mmpp.inference.queue import GenerationQueue


def default_takes(settings: Settings, queue: GenerationQueue) -> int:
    """The bot-wide number: CANDIDATES where set, else by the device the engines actually draw on."""
    if settings.candidates is not None:
        return settings.candidates
    return 2 if queue.on_gpu else 1


async def takes_for(services: Services, guild_id: int | None) -> int:
    """The takes a member's request draws here (a DM or a server that did not choose: the bot's)."""
    if guild_id is not None:
        chosen = (await services.repo.server_options(guild_id)).candidates
        if chosen is not None:
            return max(1, min(MAX_TAKES, chosen))
    return default_takes(services.settings, services.queue)

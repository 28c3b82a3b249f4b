"""Which gateway shards this bot process runs (SHARD_COUNT, SHARD_IDS).

With neither, discord.py's `AutoShardedBot` asks Discord for its recommended count and runs every
shard in this one process. Past what one process can carry, several processes each take a range of
shards (`SHARD_IDS=0-7` here, `8-15` there, the same SHARD_COUNT everywhere) and share one Redis
backend (`QUEUE_BACKEND=redis`): a server lives on exactly one shard, so its fair line lives whole
in one process, and the GPU workers are shared through Redis (see `mmpp.inference.queue.remote`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mmpp.errors import UserFacingError
from mmpp.settings import Settings

if TYPE_CHECKING:
    from mmpp.bot.db.job_log import OpenJob


class ShardsInvalid(UserFacingError):
    code = "shards_invalid"


def parse_shard_ids(text: str) -> list[int]:
    ids: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                first, last = (int(v) for v in part.split("-", 1))
                ids += range(first, last + 1)
            else:
                ids.append(int(part))
        except ValueError:
            raise ShardsInvalid(f"SHARD_IDS has {part!r}; write shard numbers like 0-3 or 0,1,2,3.") from None
    return sorted(set(ids))


def shard_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `AutoShardedBot`: none at all, or `shard_count` and maybe `shard_ids`."""
    if settings.shard_ids and settings.shard_count is None:
        raise ShardsInvalid("SHARD_IDS needs SHARD_COUNT too (the total over every bot process).")
    if settings.shard_count is None:
        return {}
    options: dict[str, Any] = {"shard_count": settings.shard_count}
    if settings.shard_ids:
        ids = parse_shard_ids(settings.shard_ids)
        if not ids or ids[-1] >= settings.shard_count or ids[0] < 0:
            raise ShardsInvalid(
                f"SHARD_IDS={settings.shard_ids} must name shards from 0 to {settings.shard_count - 1} "
                f"(SHARD_COUNT={settings.shard_count})."
            )
        if settings.queue_backend != "redis" and len(ids) < settings.shard_count:
            raise ShardsInvalid(
                "A bot process that runs only some shards shares the GPUs with the others through Redis: "
                "set QUEUE_BACKEND=redis."
            )
        options["shard_ids"] = ids
    return options


def shard_of(guild_id: int | None, shard_count: int) -> int:
    """Discord's rule for which shard carries a server's events; direct messages come on shard 0."""
    return 0 if guild_id is None else (guild_id >> 22) % shard_count


def own_jobs(settings: Settings, jobs: Sequence[OpenJob]) -> list[OpenJob]:
    """The open jobs this process answers for: those of servers on its own shards (DMs: shard 0).

    Several shard processes share one database. At start and at stop each closes the jobs its own
    previous run left open, and never another live process's: a member whose portrait is still
    being drawn by shard 0's process must not hear "I restarted" because shard 1's restarted.
    A process that runs every shard answers for every job, whatever the shard layout was before.
    """
    ids = shard_options(settings).get("shard_ids")
    if ids is None:
        return list(jobs)
    assert settings.shard_count is not None  # shard_options refuses SHARD_IDS without it
    mine = set(ids)
    return [job for job in jobs if shard_of(job.guild_id, settings.shard_count) in mine]

"""What the bot's cogs share: settings, engine, queue, repository, and the in-memory face and result caches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import discord

from mmpp.bot.face_cache import FaceCache
from mmpp.bot.metrics import BotMetrics
from mmpp.bot.portrait.bookkeeping import LogWrites
from mmpp.bot.results import ResultStore
from mmpp.bot.uploads.refusals import RefusedUploads
from mmpp.settings import Settings

if TYPE_CHECKING:
    from mmpp.bot.db import Database, Repository
    from mmpp.bot.uploads.decoding import Decoder
    from mmpp.bot.uploads.download import Downloader
    from mmpp.inference.engine import Engine
    from mmpp.inference.queue import GenerationQueue


@dataclass
class Services:
    settings: Settings
    engine: Engine
    queue: GenerationQueue
    database: Database
    repo: Repository
    faces: FaceCache
    downloader: Downloader
    # Decodes and face searches, in worker processes, a bounded number at once bot-wide.
    decoder: Decoder
    # Finished portraits, for Post and /last: in memory, under the Reroll cache's limits.
    results: ResultStore
    # Members whose request is acknowledged but not yet queued (quota, download, face): one each.
    preparing: set[int] = field(default_factory=set)
    # Of those, members who ran /cancel meanwhile: their request stops before it is queued.
    cancel_requests: set[int] = field(default_factory=set)
    # Members whose last pictures could not be used: asked to wait before the next download.
    refused_uploads: RefusedUploads = field(default_factory=RefusedUploads)
    # Log rows of jobs whose reply is still being written; a graceful stop waits for them.
    inflight: set[int] = field(default_factory=set)
    # Log writes once a job is queued: a database error never stops a job or undoes a delivery.
    writes: LogWrites = field(init=False)
    # The bot's Prometheus metrics, in the queue's registry (one /metrics page).
    metrics: BotMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = BotMetrics(self.queue)
        self.writes = LogWrites(self.repo, on_outcome=self.metrics.outcome)


def services_of(interaction: discord.Interaction) -> Services:
    """The services of the bot that received this interaction (see `mmpp.bot.app.app.MMPPBot`)."""
    return interaction.client.services  # type: ignore[attr-defined,no-any-return]

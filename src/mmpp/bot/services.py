"""What the bot's cogs and buttons share: settings, the queue's one front, the database, the
in-memory face and result caches, and the two owners of request state (`Admissions` for requests
being prepared, `LogWrites` for replies still being written)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import discord

from mmpp.bot.metrics import BotMetrics
from mmpp.bot.portrait.bookkeeping import LogWrites
from mmpp.bot.portrait.order import Admissions
from mmpp.bot.stores import KeptResult, TimedStore
from mmpp.bot.uploads.refusals import RefusedUploads
from mmpp.settings import Settings

if TYPE_CHECKING:
    from mmpp.bot.db import Database, Repository
    from mmpp.bot.uploads.decoding import Decoder
    from mmpp.bot.uploads.download import Downloader
    from mmpp.inference.preprocess import LocatedFace
    from mmpp.inference.queue import QueueFront


@dataclass
class Services:
    settings: Settings
    # Faces prepared, styles read, jobs admitted and submitted: whichever backend draws.
    queue: QueueFront
    database: Database
    repo: Repository
    faces: TimedStore[LocatedFace]
    downloader: Downloader
    # Decodes and face searches, in worker processes, a bounded number at once bot-wide.
    decoder: Decoder
    # Finished portraits, for Post and /last: in memory, under the Reroll cache's limits.
    results: TimedStore[KeptResult]
    # Members whose last pictures could not be used: asked to wait before the next download.
    refused_uploads: RefusedUploads = field(default_factory=RefusedUploads)
    # Requests acknowledged but not queued yet (one per member), and /cancel for them.
    admissions: Admissions = field(init=False)
    # Log writes once a job is queued, and the replies still being written (a graceful stop waits).
    writes: LogWrites = field(init=False)
    # The bot's Prometheus metrics, in the queue's registry (one /metrics page).
    metrics: BotMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.admissions = Admissions(self.queue)
        self.metrics = BotMetrics(self.queue)
        self.writes = LogWrites(self.repo, on_outcome=self.metrics.outcome)


def services_of(interaction: discord.Interaction) -> Services:
    """The services of the bot that received this interaction (see `mmpp.bot.app.app.MMPPBot`)."""
    return interaction.client.services  # type: ignore[attr-defined,no-any-return]

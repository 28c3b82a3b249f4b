"""What the bot's cogs share: settings, engine, queue, repository, and the in-memory face and result caches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import discord

from mmpp.bot.portrait.bookkeeping import LogWrites
from mmpp.bot.stores import KeptResult, TimedStore
from mmpp.bot.uploads.refusals import RefusedUploads
from mmpp.settings import Settings

if TYPE_CHECKING:
    from mmpp.bot.db import Database, Repository
    from mmpp.bot.uploads.decoding import Decoder
    from mmpp.bot.uploads.download import Downloader
    from mmpp.inference.engine import Engine
    from mmpp.inference.preprocess import LocatedFace
    from mmpp.inference.queue import GenerationQueue


@dataclass
class Services:
    settings: Settings
    engine: Engine
    queue: GenerationQueue
    database: Database
    repo: Repository
    faces: TimedStore[LocatedFace]
    downloader: Downloader
    # Decodes and face searches, in worker processes, a bounded number at once bot-wide.
    decoder: Decoder
    # Finished portraits, for Post and /last: in memory, under the Reroll cache's limits.
    results: TimedStore[KeptResult]
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

    def __post_init__(self) -> None:
        self.writes = LogWrites(self.repo)


def services_of(interaction: discord.Interaction) -> Services:
    """The services of the bot that received this interaction (see `mmpp.bot.app.app.MMPPBot`)."""
    return interaction.client.services  # type: ignore[attr-defined,no-any-return]

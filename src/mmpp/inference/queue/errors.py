"""Why a submit was refused, worded for the member who ran the command."""

from __future__ import annotations

import time

from mmpp.errors import N_, UserFacingError


def discord_time(seconds_from_now: float) -> str:
    """A moment as a Discord timestamp ("in 2 minutes"), which each member's client words in their language."""
    return f"<t:{int(time.time() + max(seconds_from_now, 0)) + 1}:R>"


class QueueFull(UserFacingError):
    code = "queue_full"

    def __init__(self, waiting: int, estimated_wait_s: float) -> None:
        super().__init__(
            N_("I'm too busy right now: {waiting} portraits are already waiting, and the line clears {when}. "
               "Please try again in a little while."),
            waiting=waiting, when=discord_time(estimated_wait_s),
        )
        self.waiting = waiting
        self.estimated_wait_s = estimated_wait_s


class AlreadyQueued(UserFacingError):
    code = "already_queued"

    def __init__(self, job_id: str, position: int | None, estimated_wait_s: float) -> None:
        if position is None:
            super().__init__(N_(
                "Your previous portrait is being made right now. "
                "Wait for it to finish (or cancel it) before asking for another one."
            ))
        else:
            super().__init__(
                N_("You already have a portrait waiting (number {position} in line, ready {when}). "
                   "Wait for it to finish (or cancel it) before asking for another one."),
                position=position, when=discord_time(estimated_wait_s),
            )
        self.job_id = job_id
        self.position = position


class QueueClosed(UserFacingError):
    code = "queue_closed"

    def __init__(self) -> None:
        super().__init__(N_("I'm restarting and not taking new portraits right now. Please try again in a minute."))


class NoWorkers(UserFacingError):
    code = "no_workers"

    def __init__(self) -> None:
        super().__init__(N_("No GPU is drawing portraits right now (its machine may be restarting). "
                            "Please try again in a few minutes."))

"""Why a submit was refused, worded for the member who ran the command."""

from __future__ import annotations

from mmpp.errors import UserFacingError


def describe_wait(seconds: float) -> str:
    """A wait in the words a person would use; precision beyond this would be false anyway."""
    if seconds < 45:
        return "less than a minute"
    if seconds < 90:
        return "about a minute"
    minutes = round(seconds / 60)
    if minutes < 55:
        return f"about {minutes} minutes"
    if seconds < 90 * 60:
        return "about an hour"
    return f"about {round(seconds / 3600)} hours"


class QueueFull(UserFacingError):
    code = "queue_full"

    def __init__(self, waiting: int, estimated_wait_s: float) -> None:
        super().__init__(
            f"I'm too busy right now: {waiting} portraits are already waiting, "
            f"which is {describe_wait(estimated_wait_s)} of work. Please try again in a little while."
        )
        self.waiting = waiting
        self.estimated_wait_s = estimated_wait_s


class AlreadyQueued(UserFacingError):
    code = "already_queued"

    def __init__(self, job_id: str, position: int | None, estimated_wait_s: float) -> None:
        if position is None:
            message = (
                "Your previous portrait is being made right now. "
                "Wait for it to finish (or cancel it) before asking for another one."
            )
        else:
            message = (
                f"You already have a portrait waiting (number {position} in line, "
                f"{describe_wait(estimated_wait_s)} to go). "
                "Wait for it to finish (or cancel it) before asking for another one."
            )
        super().__init__(message)
        self.job_id = job_id
        self.position = position


class QueueClosed(UserFacingError):
    code = "queue_closed"

    def __init__(self) -> None:
        super().__init__("I'm restarting and not taking new portraits right now. Please try again in a minute.")


class NoWorkers(UserFacingError):
    code = "no_workers"

    def __init__(self) -> None:
        super().__init__("No GPU is drawing portraits right now (its machine may be restarting). "
                         "Please try again in a few minutes.")

"""Why a submit was refused: a code and the numbers behind it (the bot words them for the member)."""

from __future__ import annotations

from mmpp.errors import CodedError


class QueueFull(CodedError):
    code = "queue_full"

    def __init__(self, waiting: int, estimated_wait_s: float) -> None:
        super().__init__(waiting=waiting, estimated_wait_s=estimated_wait_s)
        self.waiting = waiting
        self.estimated_wait_s = estimated_wait_s


class AlreadyQueued(CodedError):
    """`position` None: the member's portrait is being drawn now, not waiting."""

    code = "already_queued"

    def __init__(self, job_id: str, position: int | None, estimated_wait_s: float) -> None:
        super().__init__(job_id=job_id, position=position, estimated_wait_s=estimated_wait_s)
        self.job_id = job_id
        self.position = position
        self.estimated_wait_s = estimated_wait_s


class QueueClosed(CodedError):
    code = "queue_closed"


class NoWorkers(CodedError):
    code = "no_workers"

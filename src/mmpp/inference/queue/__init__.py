"""The GPU job queue: submit a prepared face, get a stream of events ending in a portrait.

```python
queue = GenerationQueue(engine, settings)
queue.start()
queue.admit(member.id)  # refuses at once: closing, already queued, full
face = await queue.prepare(located)
handle = queue.submit(face, "sunny-cartoon", user_id=member.id, guild_id=guild.id)
async for event in handle.events():
    ...  # Queued, Started, Step, then Done | Failed | Cancelled
```
"""

from mmpp.inference.queue.errors import AlreadyQueued, NoWorkers, QueueClosed, QueueFull
from mmpp.inference.queue.front import FacePreparer, QueueFront
from mmpp.inference.queue.gpu_queue import GenerationQueue, JobHandle
from mmpp.inference.queue.jobs import (
    Cancelled,
    Done,
    DroppedJob,
    Failed,
    JobEvent,
    JobState,
    Queued,
    ShutdownReport,
    Started,
    Step,
    TerminalEvent,
    Timings,
)
from mmpp.inference.queue.metrics import DrawMetrics, QueueMetrics

__all__ = [
    "AlreadyQueued",
    "Cancelled",
    "Done",
    "DrawMetrics",
    "DroppedJob",
    "FacePreparer",
    "Failed",
    "GenerationQueue",
    "JobEvent",
    "JobHandle",
    "JobState",
    "NoWorkers",
    "QueueClosed",
    "QueueFront",
    "QueueFull",
    "QueueMetrics",
    "Queued",
    "ShutdownReport",
    "Started",
    "Step",
    "TerminalEvent",
    "Timings",
]

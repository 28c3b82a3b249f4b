"""GPU workers on other machines, fed through Redis (QUEUE_BACKEND=redis).

The bot keeps the one fair queue (`mmpp.inference.queue.GenerationQueue`); `RemoteBackend` attaches one
slot per live `mmpp worker`, and a slot hands its worker a batch only when the worker has room.
What both sides agree on: `protocol` (the records) and `transport` (Redis keys, TTLs, the connection),
sealed or signed by `sealing`. The worker: `worker`, `streams`, `health`. The bot: `dispatch` (workers
and their slots), `registry` (heartbeats, claims), `courier` (a batch there and back), `events` (what
a worker's event means) and `front` (styles and faces without a model).
"""

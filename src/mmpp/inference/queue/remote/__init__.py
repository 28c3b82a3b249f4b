"""GPU workers on other machines, fed through Redis (QUEUE_BACKEND=redis).

The bot keeps the one fair queue (`mmpp.inference.queue.GenerationQueue`); `RemoteBackend` attaches one
slot per live `mmpp worker`, and a slot hands its worker a batch only when the worker has room.
`protocol` is what both sides agree on, `worker` the worker process, `dispatch` the bot's side.
"""

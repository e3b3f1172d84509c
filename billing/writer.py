"""Group commit for usage writes: whatever queued while the previous batch was being written goes
to the database together, in one transaction, on the database thread.

Callers that must know the write is durable (opening a record before forwarding; finalising it
before the client sees the end of its response) await `write`; the others (`write_soon`: rejected
requests, cancellations, lease checkpoints) do not wait, and their ops are retried until written.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from billing import metering
from config import dbthread

logger = logging.getLogger("fairway.billing")

RETRY_DELAYS_S = (0.05, 0.2, 1.0, 5.0)
MAX_BATCH = 500
GIVE_UP_AFTER = 30


class UsageWriter:
    def __init__(self) -> None:
        self._queue: list[tuple[object, asyncio.Future | None]] = []
        self._task: asyncio.Task | None = None

    async def write(self, *ops) -> None:
        """Queue ops and wait until their batch is committed (raises if it could not be)."""
        future = asyncio.get_running_loop().create_future()
        self._queue.extend((op, None) for op in ops[:-1])
        self._queue.append((ops[-1], future))
        self._kick()
        await asyncio.shield(future)  # a cancelled caller must not cancel the batch it belongs to

    def write_soon(self, *ops) -> None:
        """Queue ops without waiting; they are retried until the database takes them."""
        self._queue.extend((op, None) for op in ops)
        self._kick()

    def idle(self) -> bool:
        return not self._queue and (self._task is None or self._task.done())

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        failures = 0
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                await dbthread.run(metering.usage_write_batch, ops=[op for op, _ in batch])
            except Exception as exc:  # noqa: BLE001 — report to waiters, keep the rest for a retry
                logger.error("usage batch of %d ops failed: %s", len(batch), type(exc).__name__)
                background = [(op, None) for op, future in batch if future is None]
                for _, future in batch:
                    if future is not None and not future.done():
                        future.set_exception(exc)
                if failures >= GIVE_UP_AFTER:  # a poison op must not wedge metering; reconcile closes the rest
                    logger.error("dropping %d usage ops after %d failures: %s", len(background), failures,
                                 [getattr(op, "request_id", "-") for op, _ in background])
                    background, failures = [], 0
                self._queue[:0] = background
                if background:
                    await asyncio.sleep(RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)])
                failures += 1
                continue
            failures = 0
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_result(None)


_writers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, UsageWriter]" = weakref.WeakKeyDictionary()


def usage_writer() -> UsageWriter:
    """The writer of the running event loop (one per loop, like the upstream HTTP client)."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = UsageWriter()
    return writer

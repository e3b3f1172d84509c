"""Delivery of StreamEvents from the engine thread to a consumer.

A stream made on an asyncio loop (Engine.submit) is iterated with `async for`; the engine
thread hands it each step's events in one loop.call_soon_threadsafe per loop. A stream made
without a loop (Engine.submit_blocking) is iterated with a plain `for`, blocking on a queue.
Errors (queue wait exceeded, engine stopped) are raised from the iteration.
"""
from __future__ import annotations

import asyncio
import queue
from collections import deque
from collections.abc import Callable

from .errors import EngineError
from .sequence import StreamEvent

_END = object()


class RequestStream:
    def __init__(self, request_id: str, on_cancel: Callable[[], None], loop: asyncio.AbstractEventLoop | None):
        self.request_id = request_id
        self.loop = loop
        self._on_cancel = on_cancel
        self._cancelled = False
        self._events: deque = deque()  # loop-bound streams; touched only on the loop thread
        self._waiter: asyncio.Future | None = None
        self._queue: queue.SimpleQueue | None = None if loop else queue.SimpleQueue()

    def cancel(self) -> None:
        """Idempotent: the request leaves the batch at the next step and its cache is freed."""
        if not self._cancelled:
            self._cancelled = True
            self._on_cancel()

    # Called on the loop thread (via call_soon_threadsafe) or, blocking, on the engine thread.
    def _put(self, items: list) -> None:
        if self._queue is not None:
            for item in items:
                self._queue.put(item)
            return
        self._events.extend(items)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @staticmethod
    def _unwrap(item) -> StreamEvent:
        if item is _END:
            raise StopAsyncIteration
        if isinstance(item, EngineError):
            raise item
        return item

    def __aiter__(self):
        if self.loop is None:
            raise TypeError("blocking stream: iterate with a plain for loop")
        return self

    async def __anext__(self) -> StreamEvent:
        while not self._events:
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._events.popleft()
        if item is _END or isinstance(item, EngineError):
            self._events.appendleft(_END)  # terminal: iterating again just ends
        return self._unwrap(item)

    def __iter__(self):
        if self._queue is None:
            raise TypeError("asyncio stream: iterate with async for")
        while True:
            item = self._queue.get()
            if item is _END:
                self._queue.put(_END)
                return
            if isinstance(item, EngineError):
                self._queue.put(_END)
                raise item
            yield item

    def drain(self) -> list[StreamEvent]:
        """Blocking streams: the events delivered so far, without waiting (manual stepping)."""
        out = []
        while self._queue is not None and not self._queue.empty():
            item = self._queue.get()
            if item is _END:
                self._queue.put(_END)
                break
            if isinstance(item, EngineError):
                self._queue.put(_END)
                raise item
            out.append(item)
        return out


def deliver(batches: dict[RequestStream, list]) -> None:
    """Hand each stream its items: one call_soon_threadsafe per event loop for the whole step."""
    by_loop: dict = {}
    for stream, items in batches.items():
        if stream.loop is None:
            stream._put(items)
        else:
            by_loop.setdefault(stream.loop, []).append((stream, items))
    for loop, pairs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, pairs)
        except RuntimeError:  # the consumer's loop is closed: nobody is listening any more
            for stream, _ in pairs:
                stream.cancel()


def _put_all(pairs) -> None:
    for stream, items in pairs:
        stream._put(items)

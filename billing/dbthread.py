"""One long-lived thread per process for the gateway's own database work.

Why not `sync_to_async`: under ASGI, Django runs each request's sync calls in a fresh thread
(ThreadSensitiveContext), and Django connections are per thread, so every request would open a
new PostgreSQL connection. Usage writes, the database quota backend and idempotency keys instead
go through this one thread: one persistent connection, and the usage writer's batches queue here.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import Error as DatabaseError
from django.db import connection, connections

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_last_check = 0.0
CHECK_INTERVAL_S = 30.0


def _get() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fairway-db")
        return _executor


def _job(fn, args, kwargs):
    global _last_check
    now = time.monotonic()
    if now - _last_check > CHECK_INTERVAL_S:  # what Django does per request, here every 30 s
        _last_check = now
        connection.close_if_unusable_or_obsolete()
    try:
        return fn(*args, **kwargs)
    except DatabaseError:
        connection.close()  # a broken connection must not poison the next job
        raise


async def run(fn, /, *args, **kwargs):
    """Run `fn(*args, **kwargs)` on the database thread and await its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_get(), functools.partial(_job, fn, args, kwargs))


def shutdown() -> None:
    """Close the thread's connections and stop it (tests call this before the test database is dropped;
    the next `run` starts a fresh thread)."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.submit(connections.close_all).result(timeout=30)
        executor.shutdown(wait=True)

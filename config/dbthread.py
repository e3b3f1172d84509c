"""Fixed threads for the gateway's own database work: one writer, a small pool for the request path.

Why not `sync_to_async`: under ASGI, Django runs each request's sync calls (and the async ORM's)
in a fresh thread (ThreadSensitiveContext), and Django connections are per thread, so every
request would open its own PostgreSQL connection — a burst of cold requests exhausts
max_connections ("too many clients") and idle connections linger. Here every connection lives
in a thread that lives as long as the process:
- `run`: one thread, in order — usage writes (the writer's batches queue here), the database
  quota backend, idempotency keys;
- `query`: FAIRWAY_DB_THREADS threads for request-path lookups (API key records on a cache miss,
  conversations, readiness). A burst queues here instead of opening connections.
So one gateway process holds at most 1 + FAIRWAY_DB_THREADS connections for its API traffic.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import Error as DatabaseError
from django.db import connection, connections

_lock = threading.Lock()
_executors: dict[str, ThreadPoolExecutor] = {}
_local = threading.local()
CHECK_INTERVAL_S = 30.0


def _get(name: str) -> ThreadPoolExecutor:
    with _lock:
        executor = _executors.get(name)
        if executor is None:
            workers = 1 if name == "writer" else max(1, settings.FAIRWAY_DB_THREADS)
            executor = _executors[name] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"fairway-db-{name}")
        return executor


def _job(fn, args, kwargs):
    now = time.monotonic()
    if now - getattr(_local, "last_check", 0.0) > CHECK_INTERVAL_S:  # what Django does per request
        _local.last_check = now
        connection.close_if_unusable_or_obsolete()
    try:
        return fn(*args, **kwargs)
    except DatabaseError:
        connection.close()  # a broken connection must not poison the next job
        raise


async def _submit(name: str, fn, args, kwargs):
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_get(name), functools.partial(_job, fn, args, kwargs))


async def run(fn, /, *args, **kwargs):
    """Run `fn(*args, **kwargs)` on the writer thread (in submission order) and await its result."""
    return await _submit("writer", fn, args, kwargs)


async def query(fn, /, *args, **kwargs):
    """Run `fn(*args, **kwargs)` on one of the request-path database threads and await its result."""
    return await _submit("query", fn, args, kwargs)


def shutdown() -> None:
    """Close the threads' connections and stop them (tests call this before the test database is
    dropped; the next call starts fresh threads)."""
    with _lock:
        executors = list(_executors.values())
        _executors.clear()
    errors = []
    for executor in executors:
        # Close every worker's connection: one close job per worker, each blocking until all ran.
        workers = executor._max_workers
        barrier = threading.Barrier(workers)

        def close_mine():
            connections.close_all()
            barrier.wait(timeout=30)

        try:
            for future in [executor.submit(close_mine) for _ in range(workers)]:
                future.result(timeout=60)
        except Exception as exc:  # noqa: BLE001 — still stop this executor and the others
            errors.append(exc)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    if errors:
        raise errors[0]

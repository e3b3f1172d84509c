"""Run an ASGI app under a real uvicorn server in a background thread (real sockets, real SSE)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_in_thread(app, *, port: int | None = None, lifespan: str = "off"):
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan,
                            access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        release_db_thread()


def release_db_thread() -> None:
    """Close the gateway's database thread (config/dbthread.py): its persistent connection would
    otherwise keep the test database busy when pytest-django drops it."""
    import sys

    dbthread = sys.modules.get("config.dbthread")
    if dbthread is not None:
        dbthread.shutdown()

"""Errors the engine raises at submit() or inside a stream; each carries retry_after (seconds)."""
from __future__ import annotations


class EngineError(Exception):
    """Base class: `message` is safe to show to a client; `retry_after` is None when retrying won't help."""

    default_message = "inference engine error"

    def __init__(self, message: str | None = None, retry_after: float | None = 1.0):
        self.message = message or self.default_message
        self.retry_after = retry_after
        super().__init__(self.message)


class TenantQueueFull(EngineError):
    """This tenant already has max_queue_per_tenant requests waiting (server: 429)."""

    default_message = "too many queued requests for this tenant"


class EngineOverloaded(EngineError):
    """All queues together are full, or a request waited longer than max_queue_wait_s (server: 503)."""

    default_message = "inference engine overloaded"


class EngineStopped(EngineError):
    """The engine is shut down or its loop died (server: 503)."""

    default_message = "inference engine is not running"


class InvalidRequest(EngineError, ValueError):
    """The request can never be served as asked, e.g. prompt + max_tokens exceed the context (server: 400)."""

    default_message = "invalid generation request"

    def __init__(self, message: str | None = None):
        super().__init__(message, retry_after=None)

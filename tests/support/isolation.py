"""Shared test plumbing: an isolated cache per test, and the FAKE upstream wired into the gateway."""

from __future__ import annotations

import copy
import uuid
from contextlib import contextmanager

from .fake_inference import FakeInferenceService, FakeScript
from .servers import serve_in_thread


def cache_isolate(settings) -> None:
    """A fresh cache namespace for this test, without flushing a Redis other suites may share."""
    caches = copy.deepcopy(settings.CACHES)
    prefix = f"test-{uuid.uuid4().hex}"
    caches["default"]["KEY_PREFIX"] = prefix
    if caches["default"]["BACKEND"].endswith("LocMemCache"):
        caches["default"]["LOCATION"] = prefix
    settings.CACHES = caches


@contextmanager
def fake_upstream_serving(settings, script: FakeScript | None = None, *, service: FakeInferenceService | None = None):
    """Run a FAKE inference service (`service`, or a plain one with `script`) on a real socket and point
    the gateway (settings) at it, as its only replica."""
    from gateway import upstream

    service = service or FakeInferenceService(script or FakeScript())
    with serve_in_thread(service) as url:
        settings.FAIRWAY_INFERENCE_URL = url
        settings.FAIRWAY_INFERENCE_URLS = []
        settings.FAIRWAY_INFERENCE_TOKEN = service.script.token
        upstream.reset()
        try:
            yield service
        finally:
            upstream.reset()

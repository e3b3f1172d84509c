"""A second Django ASGI handler for the API paths, with a lean middleware stack.

Django runs every `MiddlewareMixin` middleware's hooks through `sync_to_async` (thread-sensitive:
one shared thread), so the standard stack costs each request a dozen thread hops — most of the
gateway's overhead (measured with bench/gateway_overhead.py). The API paths authenticate with
API keys, never cookies: sessions, CSRF, messages and the auth middleware do nothing for them.
They keep only the async request-id middleware; the admin and the dashboard keep the full stack.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

API_PREFIXES = ("/v1/", "/health", "/ready")
API_MIDDLEWARE = ["gateway.middleware.RequestIdMiddleware"]


class ApiASGIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        # BaseHandler reads settings.MIDDLEWARE; swap in the API stack while this handler is built
        # (start-up, single-threaded), then put the full stack back for every other handler.
        full_stack = settings.MIDDLEWARE
        settings.MIDDLEWARE = API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full_stack


class ApiRouter:
    """HTTP dispatch by path: API paths to the lean handler, everything else to the full one."""

    def __init__(self, api_app, web_app):
        self.api_app, self.web_app = api_app, web_app

    async def __call__(self, scope, receive, send):
        app = self.api_app if scope["path"].startswith(API_PREFIXES) else self.web_app
        await app(scope, receive, send)

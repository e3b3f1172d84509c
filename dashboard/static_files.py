"""Static files served by the ASGI gateway itself (embedded default and production alike).

Why Django's ASGIStaticFilesHandler and not WhiteNoise: WhiteNoise's Django middleware is sync-only,
so in an async stack it would push *every* request (the streaming API included) through a
sync-to-async thread hop, and its other entry point wraps WSGI apps, not ASGI ones. The handler
below sits in front of Django at the ASGI level: a path outside STATIC_URL is handed straight to the
app (one string comparison), and files are found through the staticfiles finders, so no
`collectstatic` step is needed. The assets are small (Chart.js ~210 KB, CSS, two scripts) and seen
by operators only; a CDN or reverse proxy can still cache them in front if wanted.
"""

from __future__ import annotations

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import SuspiciousOperation
from django.http import Http404

CACHE_SECONDS = 300  # file names carry no content hash, so keep browser caching short


class StaticFilesApp(ASGIStaticFilesHandler):
    def serve(self, request):
        try:
            response = super().serve(request)
        except SuspiciousOperation:  # e.g. an encoded "../": not a file we serve, and not a 500
            raise Http404("not found") from None
        response["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
        response["X-Content-Type-Options"] = "nosniff"
        return response

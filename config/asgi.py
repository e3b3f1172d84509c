"""ASGI entry point: HTTP through Django; WebSocket routes are added by the apps that need them."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (after Django setup)

from config.api_handler import ApiASGIHandler, ApiRouter  # noqa: E402
from dashboard import routing as dashboard_routing  # noqa: E402
from dashboard.static_files import StaticFilesApp  # noqa: E402
from gateway import realtime  # noqa: E402

websocket_application = URLRouter([*dashboard_routing.websocket_urlpatterns, *realtime.websocket_urlpatterns])

# Static files (admin + dashboard assets) are served by the gateway itself in every deployment;
# every other path goes straight to Django (see dashboard/static_files.py for why not WhiteNoise).
# API paths (/v1/, /health, /ready) take a lean middleware stack (config/api_handler.py).
http_application = ApiRouter(api_app=ApiASGIHandler(), web_app=StaticFilesApp(django_asgi_app))
application = ProtocolTypeRouter({"http": http_application, "websocket": websocket_application})

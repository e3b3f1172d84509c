"""The dashboard's WebSocket routes (config/asgi.py puts them in its "websocket" router).

The dashboard socket authenticates with the operator's session cookie, so it also checks the Origin
against ALLOWED_HOSTS (a page on another site must not ride that cookie). The customer socket
(gateway/realtime.py) uses API keys, never cookies, so any origin may use it.
"""

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from .consumers import LiveConsumer
from .live import LIVE_SOCKET_PATH

websocket_urlpatterns = [
    path(LIVE_SOCKET_PATH.lstrip("/"), AllowedHostsOriginValidator(AuthMiddlewareStack(LiveConsumer.as_asgi()))),
]

"""Chat completions over a WebSocket: `/v1/realtime/chat`.

Each request runs through the HTTP endpoint itself (`views.chat_completions` / `views.completions`):
the message becomes a Django HttpRequest (path, API key, client address, Idempotency-Key, raw body)
and the endpoint's response is re-framed as WebSocket messages. So authentication (on every request:
a revoked key or suspended tenant stops at once), validation, rate limits, quotas, conversations,
metering and error shapes are exactly the HTTP API's, with no second pipeline to keep in step.
Closing the socket (or sending `cancel`) cancels the request's task: the SSE generator's cleanup
closes the upstream stream, which cancels the generation, and metering bills what was delivered.

Protocol (JSON text frames):
  client → {"type": "auth", "api_key": "fw_…"}            first, unless the handshake sent Authorization
  client → {"type": "chat.completions" | "completions", "id"?: str, "idempotency_key"?: str,
            "body": {…the OpenAI request body…}}          `stream` defaults to true here
  client → {"type": "cancel", "request_id": "req_…"}
  server → {"type": "session.created"}
  server → {"type": "response.created", "id", "request_id", "headers": {x-ratelimit-*…}}
  server → {"type": "chunk", "id", "request_id", "data": <chat.completion.chunk>}   (stream)
  server → {"type": "response", "id", "request_id", "data": <chat.completion>}      (stream: false)
  server → {"type": "response.done", "id", "request_id"}
  server → {"type": "response.cancelled", "id", "request_id"}                        (after `cancel`)
  server → {"type": "error", "id"?, "request_id"?, "status"?, "error": {message, type, param, code}}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import HttpRequest, QueryDict
from django.urls import path

from tenants.authentication import aauthenticate_request

from . import views
from .errors import ApiError
from .middleware import current_request_id, new_request_id

logger = logging.getLogger("fairway.gateway")

AUTH_TIMEOUT_S = 10.0
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
ENDPOINTS = {"chat.completions": ("/v1/chat/completions", views.chat_completions),
             "completions": ("/v1/completions", views.completions)}
FORWARDED_HEADERS = ("retry-after", "x-request-id")


def _events(text: str):
    """The data payloads of SSE text (an endpoint's stream parts, or a replayed stream body)."""
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data:"):
                yield line[5:].strip()


class RealtimeChatConsumer(AsyncWebsocketConsumer):
    # API keys, not cookies, so no session middleware and no Origin check; no channel layer either
    # (an alias that is not configured): a customer socket needs no group messaging.
    channel_layer_alias = "fairway-realtime-none"

    async def connect(self):
        self.authorization = self._header(b"authorization")
        self.tasks: dict[str, asyncio.Task] = {}
        self.cancelled: set[str] = set()  # cancelled by the client's message (the socket stays open)
        self.ready = False
        await self.accept()
        if self.authorization:
            await self._authenticate()
        else:
            self.auth_timer = asyncio.get_running_loop().create_task(self._auth_deadline())

    async def disconnect(self, code):
        timer = getattr(self, "auth_timer", None)
        if timer is not None:
            timer.cancel()
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()  # the client is gone: stop generating for it
        if tasks:
            await asyncio.wait(tasks, timeout=10)  # let cleanup (cancel upstream, settle billing) finish

    async def receive(self, text_data=None, bytes_data=None):
        try:
            message = json.loads(text_data if text_data is not None else bytes_data)
            kind = message.get("type") if isinstance(message, dict) else None
        except (TypeError, ValueError):
            return await self._error(ApiError(400, "Send JSON text messages.", code="invalid_message"))
        if kind == "auth" and not self.ready:
            key = message.get("api_key")
            self.authorization = f"Bearer {key}" if isinstance(key, str) else ""
            return await self._authenticate()
        if not self.ready:
            return await self._error(ApiError(401, "Authenticate first: {\"type\": \"auth\", \"api_key\": …}.",
                                              code="invalid_api_key"), close=CLOSE_UNAUTHORIZED)
        if kind in ENDPOINTS:
            return self._start(kind, message)
        if kind == "cancel":
            request_id = str(message.get("request_id"))
            task = self.tasks.get(request_id)
            if task is not None:
                self.cancelled.add(request_id)
                task.cancel()
            return None
        return await self._error(ApiError(400, f"Unknown message type {kind!r}.", code="invalid_message"))

    # --- authentication ---------------------------------------------------------------------

    def _header(self, name: bytes) -> str:
        for key, value in self.scope.get("headers", ()):
            if key.lower() == name:
                return value.decode("latin-1")
        return ""

    def _request(self, *, path: str = "/v1/chat/completions", body: bytes = b"", request_id: str = "",
                 idempotency_key: str | None = None) -> HttpRequest:
        """The HttpRequest the HTTP endpoint would have seen for this message."""
        request = HttpRequest()
        request.method, request.path, request.path_info = "POST", path, path
        client = self.scope.get("client") or ("", 0)
        request.META = {"REMOTE_ADDR": client[0] or "", "REQUEST_METHOD": "POST", "PATH_INFO": path,
                        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
                        "SERVER_NAME": "realtime", "SERVER_PORT": "0"}
        if self.authorization:
            request.META["HTTP_AUTHORIZATION"] = self.authorization
        if idempotency_key is not None:
            request.META["HTTP_IDEMPOTENCY_KEY"] = str(idempotency_key)
        # The handshake's query string: a key in the URL is refused here exactly as over HTTP.
        request.GET = QueryDict(self.scope.get("query_string", b"").decode("latin-1"))
        request.content_type = "application/json"
        request._body = body
        request.request_id = request_id or new_request_id()
        return request

    async def _authenticate(self) -> None:
        try:
            await aauthenticate_request(self._request())
        except ApiError as error:
            close = CLOSE_FORBIDDEN if error.status == 403 else CLOSE_UNAUTHORIZED
            return await self._error(error, close=close)
        self.ready = True
        timer = getattr(self, "auth_timer", None)
        if timer is not None:
            timer.cancel()
        await self._send({"type": "session.created"})

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(AUTH_TIMEOUT_S)
        if not self.ready:
            await self._error(ApiError(401, "No API key was sent in time.", code="invalid_api_key"),
                              close=CLOSE_UNAUTHORIZED)

    # --- requests ---------------------------------------------------------------------------

    def _start(self, kind: str, message: dict) -> None:
        request_id = new_request_id()
        client_id = message.get("id")
        task = asyncio.get_running_loop().create_task(self._run(kind, message, request_id, client_id))
        self.tasks[request_id] = task
        task.add_done_callback(lambda _: self.tasks.pop(request_id, None))

    async def _run(self, kind: str, message: dict, request_id: str, client_id) -> None:
        token = current_request_id.set(request_id)
        ids = {"request_id": request_id, **({"id": client_id} if client_id is not None else {})}
        try:
            body = message.get("body")
            if isinstance(body, dict):
                body = {"stream": True, **body}  # a socket is for streaming, unless told otherwise
            raw = json.dumps(body, ensure_ascii=False).encode()  # the endpoint checks its size (413) and shape
            path, endpoint = ENDPOINTS[kind]
            request = self._request(path=path, body=raw, request_id=request_id,
                                    idempotency_key=message.get("idempotency_key"))
            response = await endpoint(request)  # the HTTP endpoint: same checks, limits, metering, errors
            await self._relay(response, ids)
        except asyncio.CancelledError:
            # The endpoint's stream cleanup already ran (upstream closed, usage settled as cancelled).
            if request_id in self.cancelled:
                self.cancelled.discard(request_id)
                await self._send({"type": "response.cancelled", **ids})
                return
            raise  # the socket closed
        except Exception:  # noqa: BLE001 — a failure here must reach the client, not kill the socket
            logger.exception("realtime request failed")
            await self._error(ApiError(500, "The server had an error while processing your request.",
                                       code="internal_error"), **ids)
        finally:
            current_request_id.reset(token)

    async def _relay(self, response, ids: dict) -> None:
        headers = {k.lower(): v for k, v in response.items()
                   if k.lower().startswith("x-ratelimit-") or k.lower() in FORWARDED_HEADERS}
        if response.status_code != 200:
            error = json.loads(response.content).get("error", {})
            return await self._send({"type": "error", **ids, "status": response.status_code, "error": error,
                                     "headers": headers})
        await self._send({"type": "response.created", **ids, "headers": headers})
        if getattr(response, "streaming", False):
            parts = response.streaming_content
            try:
                async for part in parts:
                    if not await self._forward(part.decode(), ids):
                        break
            finally:
                await parts.aclose()  # runs the endpoint's stream cleanup now, whatever ended the loop
        elif response.get("Content-Type", "").startswith("text/event-stream"):
            await self._forward(response.content.decode(), ids)  # an Idempotency-Key replay of a stream
        else:
            await self._send({"type": "response", **ids, "data": json.loads(response.content)})
        await self._send({"type": "response.done", **ids})

    async def _forward(self, text: str, ids: dict) -> bool:
        """Send each SSE event of `text`; False once the stream is over ([DONE] or an error event)."""
        for data in _events(text):
            if data == "[DONE]":
                return False
            payload = json.loads(data)
            if "error" in payload:
                await self._send({"type": "error", **ids, "error": payload["error"]})
                return False
            await self._send({"type": "chunk", **ids, "data": payload})
        return True

    async def _send(self, message: dict) -> None:
        with contextlib.suppress(Exception):  # the socket may already be closing
            await self.send(text_data=json.dumps(message, separators=(",", ":"), ensure_ascii=False))

    async def _error(self, error: ApiError, *, close: int | None = None, **ids) -> None:
        message = {"type": "error", **ids, "status": error.status, "error": error.body()["error"]}
        if error.retry_after is not None:
            message["retry_after"] = error.retry_after
        await self._send(message)
        if close is not None:
            await self.close(code=close)


websocket_urlpatterns = [path("v1/realtime/chat", RealtimeChatConsumer.as_asgi())]

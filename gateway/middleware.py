"""Request ids: every response carries `x-request-id`, and logs can name the request."""

import contextvars
import logging
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("fairway_request_id", default="-")


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


class RequestIdMiddleware:
    """Assigns `request.request_id` and echoes it as `x-request-id` (sync and async)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        token = self._begin(request)
        try:
            return self._finish(request, self.get_response(request))
        finally:
            current_request_id.reset(token)

    async def __acall__(self, request):
        token = self._begin(request)
        try:
            return self._finish(request, await self.get_response(request))
        finally:
            current_request_id.reset(token)

    @staticmethod
    def _begin(request):
        request.request_id = new_request_id()
        return current_request_id.set(request.request_id)

    @staticmethod
    def _finish(request, response):
        response["x-request-id"] = request.request_id
        return response


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` to every log record (use %(request_id)s in formats)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True

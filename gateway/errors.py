"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.

Every failure a client can see goes through `ApiError` (raised in services/views) or is mapped
from DRF's exceptions by `drf_exception_handler`, so the shape and status stay one contract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.http import HttpResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}


@dataclass
class ApiError(Exception):
    status: int
    message: str
    code: str | None = None
    param: str | None = None
    type: str | None = None
    retry_after: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict:
        return error_body(self.message, status=self.status, code=self.code, param=self.param, type_=self.type)

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, int(self.retry_after)))
        return headers


def error_body(message: str, *, status: int, code: str | None = None, param: str | None = None,
               type_: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_ or ERROR_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, code=code, param=param)


def error_response(error: ApiError) -> HttpResponse:
    response = HttpResponse(json.dumps(error.body()), status=error.status, content_type="application/json")
    for name, value in error.response_headers().items():
        response[name] = value
    return response


_DRF_CODES = {401: "invalid_api_key", 403: "permission_denied", 404: "not_found", 405: "method_not_allowed",
              415: "unsupported_media_type"}


def to_api_error(exc: Exception) -> ApiError | None:
    """Map any exception a view may raise to an ApiError (None: not a client-facing error)."""
    from django import db
    from django.core.exceptions import RequestDataTooBig
    from django.http import Http404

    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, (db.OperationalError, db.InterfaceError)):
        # The database is down or out of connections: a retryable outage, never a 500.
        return ApiError(503, "The service's database is temporarily unavailable; please retry shortly.",
                        code="service_unavailable", retry_after=2)
    if isinstance(exc, RequestDataTooBig):
        return ApiError(413, "The request body is too large (limit 1 MiB).", code="request_too_large")
    if isinstance(exc, Http404):
        return ApiError(404, "Not found.", code="not_found")
    if isinstance(exc, drf_exceptions.ParseError):
        return ApiError(400, f"We could not parse the JSON body of your request: {exc.detail}",
                        code="invalid_json")
    if not isinstance(exc, drf_exceptions.APIException):
        return None
    status = exc.status_code
    detail = exc.detail
    if isinstance(detail, (list, dict)):
        message, param, code = _first_validation_error(detail)
    else:
        message, param, code = str(detail), None, getattr(detail, "code", None)
    if code in (None, "error", "invalid", "not_authenticated", "authentication_failed", "permission_denied"):
        code = _DRF_CODES.get(status, code)
    headers = {"WWW-Authenticate": 'Bearer realm="fairway"'} if status == 401 else {}
    wait = getattr(exc, "wait", None)
    return ApiError(status, message, code=code, param=param, headers=headers,
                    retry_after=None if wait is None else int(wait) + 1)


def drf_exception_handler(exc, context):
    """DRF's exception handler, answering in OpenAI's shape."""
    error = to_api_error(exc)
    if error is None:
        return None
    return Response(error.body(), status=error.status, headers=error.response_headers())


def _first_validation_error(detail) -> tuple[str, str | None, str | None]:
    """Flatten DRF's nested validation errors into one message naming the first bad field."""
    if isinstance(detail, list):
        first = detail[0] if detail else "Invalid request."
        if isinstance(first, (list, dict)):
            return _first_validation_error(first)
        return str(first), None, getattr(first, "code", None)
    for key, value in detail.items():
        message, param, code = _first_validation_error(value) if isinstance(value, (list, dict)) else (
            str(value), None, getattr(value, "code", None))
        name = key if param is None else f"{key}.{param}"
        if key == "non_field_errors":
            name = param
        return f"{name}: {message}" if name else message, name, code
    return "Invalid request.", None, None

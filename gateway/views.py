"""OpenAI-compatible endpoints. Thin: authenticate, validate, hand over to CompletionRun.

These are async Django views (the hot path is async end to end); they reuse the same API-key
authentication as the DRF views through `tenants.authentication.aauthenticate_request`.
"""

from __future__ import annotations

import functools
import json
import logging

from django.conf import settings
from django.http import HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from redis.exceptions import RedisError

from conversations import turns
from tenants.authentication import aauthenticate_request, require_scope

from . import upstream
from .completions import CompletionRun, Outcome
from .errors import ApiError, error_response, to_api_error
from .idempotency import idempotency_abandon, idempotency_begin
from .quotas.admission import admission_open, endpoint_of
from .quotas.headers import ratelimit_headers_apply
from .quotas.requests import requests_check
from .sse import SSE_HEADERS
from .validation import parse_json_body, validate_chat, validate_completion

logger = logging.getLogger("fairway.gateway")


def openai_endpoint(*methods: str):
    """Async view wrapper: method check, errors in OpenAI's shape, CSRF exempt (API keys, not cookies)."""

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        async def wrapper(request, *args, **kwargs):
            try:
                if request.method not in methods:
                    raise ApiError(405, f"Method {request.method} is not allowed here.", code="method_not_allowed")
                response = await view(request, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 — every failure must leave in OpenAI's shape
                error = to_api_error(exc)
                if error is None and isinstance(exc, RedisError):  # cache/limits store down: fail closed
                    logger.error("redis unreachable in %s: %s: %s", view.__name__, type(exc).__name__, exc)
                    error = ApiError(503, "A backing service is unreachable; please retry shortly.",
                                     code="service_unavailable", retry_after=5)
                if error is None:
                    logger.exception("unhandled error in %s", view.__name__)
                    error = ApiError(500, "The server had an error while processing your request.",
                                     code="internal_error")
                elif error.status >= 500:  # why, for the operator (messages carry no secrets or content)
                    cause = error.message if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}"
                    logger.warning("%s answered %d %s: %s", view.__name__, error.status, error.code, cause[:300])
                response = error_response(error)
            return await ratelimit_headers_apply(request=request, response=response)  # x-ratelimit-* on all

        return wrapper

    return decorate


@openai_endpoint("GET")
async def list_models(request):
    principal = await aauthenticate_request(request)
    require_scope(principal, "inference")
    cards = [card for card in await upstream.list_models() if principal.plan.allows_model(card["id"])]
    return JsonResponse({"object": "list", "data": cards})


@openai_endpoint("GET")
async def retrieve_model(request, model_id: str):
    principal = await aauthenticate_request(request)
    require_scope(principal, "inference")
    for card in await upstream.list_models():
        if card["id"] == model_id and principal.plan.allows_model(model_id):
            return JsonResponse(card)
    raise _model_not_found(model_id)


@openai_endpoint("POST")
async def chat_completions(request):
    return await _complete(request, validate_chat)


@openai_endpoint("POST")
async def completions(request):
    return await _complete(request, validate_completion)


async def _complete(request, validate):
    principal = await aauthenticate_request(request)
    require_scope(principal, "inference")
    await requests_check(request=request, principal=principal)  # requests per minute (429)
    body = _body(request)
    parsed = validate(body, max_tokens_limit=principal.plan.max_tokens_per_request)
    # A model the plan does not include answers like one that does not exist (no enumeration).
    if not principal.plan.allows_model(parsed.model) or parsed.model not in {
            card["id"] for card in await upstream.list_models()}:
        raise _model_not_found(parsed.model)
    claim = await idempotency_begin(request=request, principal=principal, body=body, endpoint=endpoint_of(parsed))
    if isinstance(claim, HttpResponseBase):
        return claim  # replay of the first attempt's result: not run, not billed
    turn = None
    try:
        # Stored history (`conversation` field): lock the conversation, forward history + new messages.
        turn = await turns.turn_prepare(principal=principal, body=body, request=parsed)
        parsed = turn.request if turn else parsed
        # Tokens, budget and concurrency: reserve, and open the usage record, before forwarding (429/503).
        admission = await admission_open(request=request, principal=principal, parsed=parsed, claim=claim)
    except BaseException:
        idempotency_abandon(request=request, principal=principal, claim=claim)
        await turns.turn_finish(turn=turn, outcome=Outcome())  # stores nothing, releases the lock
        raise
    run = CompletionRun(principal=principal, request=parsed, request_id=request.request_id, admission=admission)
    try:
        await run.open()
    except BaseException:
        await turns.turn_finish(turn=turn, outcome=run.outcome)  # stores nothing, releases the lock
        raise
    if parsed.stream:
        response = StreamingHttpResponse(turns.turn_stream(turn=turn, run=run), content_type="text/event-stream")
        for name, value in SSE_HEADERS.items():
            response[name] = value
        return response
    try:
        return HttpResponse(json.dumps(await run.whole()), content_type="application/json")
    finally:
        await turns.turn_finish(turn=turn, outcome=run.outcome)


def _body(request) -> dict:
    content_type = request.content_type or ""
    if content_type and content_type != "application/json":
        raise ApiError(415, "Send the request body as application/json.", code="unsupported_media_type")
    raw = request.body  # raises RequestDataTooBig (→ 413) past DATA_UPLOAD_MAX_MEMORY_SIZE
    if len(raw) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise ApiError(413, "The request body is too large (limit 1 MiB).", code="request_too_large")
    return parse_json_body(raw)


def _model_not_found(model: str) -> ApiError:
    return ApiError(404, f"The model '{model}' does not exist or you do not have access to it.",
                    code="model_not_found", param="model")

"""API key authentication: `Authorization: Bearer fw_…` → ApiKeyPrincipal.

Hot path, per request: parse the key (pure; typos die here without I/O) → one cache round trip
for the client's failure counter and the key's auth record → on a miss, one query (then cached
for FAIRWAY_KEY_CACHE_SECONDS) → HMAC compare on *every* request → coarse last_used touch.

`authenticate_request` / `aauthenticate_request` raise `gateway.errors.ApiError` (OpenAI shape);
`ApiKeyAuthentication` plugs the same logic into DRF.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from gateway.errors import ApiError
from tenants import authcache, keys, selectors, services
from tenants.principal import ApiKeyPrincipal, AuthRecord

logger = logging.getLogger(__name__)

WWW_AUTHENTICATE = 'Bearer realm="fairway"'
QUERY_KEY_PARAMS = ("api_key", "key", "access_token")

MSG_MISSING = "Missing API key. Send it in the header 'Authorization: Bearer <key>'."
MSG_IN_QUERY = ("API keys are not accepted in the URL; send the key in the 'Authorization: Bearer' header. "
                "Treat a key that appeared in a URL as leaked and rotate it.")
MSG_MALFORMED = "Malformed API key. Expected 'Authorization: Bearer fw_…'."
MSG_CHECKSUM = "Invalid API key: the checksum does not match (mistyped or truncated key?)."
MSG_INVALID = "Invalid API key."  # unknown key id and wrong secret must read the same
MSG_REVOKED = "This API key has been revoked."
MSG_EXPIRED = "This API key has expired."


def _now() -> datetime:
    return timezone.now()


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": WWW_AUTHENTICATE})


class _Failure(Exception):
    """An authentication failure; `counts` marks the ones that feed the per-address slowdown."""

    def __init__(self, error: ApiError, *, counts: bool, reason: str):
        super().__init__(reason)
        self.error, self.counts, self.reason = error, counts, reason


def require_scope(principal: ApiKeyPrincipal, scope: str) -> None:
    if scope not in principal.scopes:
        raise ApiError(403, f"This API key does not have the '{scope}' scope.", code="insufficient_scope")


# --- pure steps ---------------------------------------------------------------------------------

def _client(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def _key_in_query(request) -> bool:
    return any(name in request.GET for name in QUERY_KEY_PARAMS)


def _read_key(request) -> keys.ParsedKey | _Failure:
    """Header → ParsedKey, or the failure to report. No I/O."""
    if _key_in_query(request):
        return _Failure(_unauthorized(MSG_IN_QUERY), counts=False, reason="key in query string")
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header.strip():
        return _Failure(_unauthorized(MSG_MISSING), counts=False, reason="missing header")
    scheme, _, raw = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return _Failure(_unauthorized(MSG_MALFORMED), counts=True, reason="not a bearer header")
    try:
        return keys.parse(raw.strip())
    except keys.BadChecksum:
        return _Failure(_unauthorized(MSG_CHECKSUM), counts=True, reason="bad checksum")
    except keys.InvalidKey:
        return _Failure(_unauthorized(MSG_MALFORMED), counts=True, reason="malformed key")


def _check(record: AuthRecord | None, parsed: keys.ParsedKey, now: datetime) -> ApiKeyPrincipal:
    if record is None:
        raise _Failure(_unauthorized(MSG_INVALID), counts=True, reason="unknown key id")
    if not keys.verify(parsed.secret, record.secret_hash):
        raise _Failure(_unauthorized(MSG_INVALID), counts=True, reason="wrong secret")
    if record.revoked_at is not None:
        raise _Failure(_unauthorized(MSG_REVOKED), counts=True, reason="revoked")
    if record.expires_at is not None and record.expires_at <= now:
        raise _Failure(_unauthorized(MSG_EXPIRED), counts=True, reason="expired")
    if not record.tenant_active:
        error = ApiError(403, "This tenant is suspended.", code="tenant_suspended")
        raise _Failure(error, counts=False, reason="tenant suspended")
    return record.principal()


def _throttled(retry_after: int) -> ApiError:
    return ApiError(429, "Too many failed authentication attempts from this address. Retry later.",
                    code="rate_limit_exceeded", retry_after=retry_after)


def _blocked(values: dict, fail_name: str) -> bool:
    return int(values.get(fail_name) or 0) >= settings.FAIRWAY_AUTH_FAILURE_LIMIT


def _log(failure: _Failure, client: str, parsed) -> None:
    key_id = parsed.key_id if isinstance(parsed, keys.ParsedKey) else "-"
    logger.info("api key auth failed: %s key_id=%s client=%s", failure.reason, key_id, client)


# --- sync and async orchestration (same steps; only the I/O calls differ) -----------------------

def authenticate_request(request, *, now: datetime | None = None) -> ApiKeyPrincipal:
    """Authenticate a Django HttpRequest or DRF Request; raises ApiError (401/403/429)."""
    now = now or _now()
    client, parsed = _client(request), _read_key(request)
    fail_name, retry_after = authcache.failure_bucket(client=client, now=now)
    names = [fail_name] + ([authcache.record_key(parsed.key_id)] if isinstance(parsed, keys.ParsedKey) else [])
    values = cache.get_many(names)  # one round trip: slowdown counter + cached record
    if _blocked(values, fail_name):
        raise _throttled(retry_after)
    try:
        if isinstance(parsed, _Failure):
            raise parsed
        record = authcache.record_decode(values.get(names[1]))
        if record is None:
            record = selectors.apikey_auth_record(key_id=parsed.key_id)
            if record is not None:
                authcache.record_set(record)
        principal = _check(record, parsed, now)
    except _Failure as failure:
        _log(failure, client, parsed)
        if failure.counts:
            authcache.failure_record(fail_name)
        raise failure.error from None
    services.apikey_touch_last_used(api_key_id=principal.api_key_id, now=now)
    return principal


# Cache misses in flight, per event loop: a burst of requests with one uncached key (a cold start,
# an expired record) makes one database lookup, not one each.
_lookups: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def _shared_lookup(key_id: str) -> AuthRecord | None:
    loop = asyncio.get_running_loop()
    pending: dict[str, asyncio.Task] = _lookups.setdefault(loop, {})
    task = pending.get(key_id)
    if task is None:
        # A fresh context: the lookup must not run in the first requester's per-request executor,
        # which ends with that request.
        task = pending[key_id] = loop.create_task(_lookup(key_id), context=contextvars.Context())
        task.add_done_callback(lambda _: pending.pop(key_id, None))
    return await asyncio.shield(task)  # one waiter going away must not cancel the others' lookup


async def _lookup(key_id: str) -> AuthRecord | None:
    record = await selectors.aapikey_auth_record(key_id=key_id)
    if record is not None:
        await authcache.arecord_set(record)
    return record


async def aauthenticate_request(request, *, now: datetime | None = None) -> ApiKeyPrincipal:
    """Async twin of `authenticate_request` (Django's async cache and ORM APIs)."""
    now = now or _now()
    client, parsed = _client(request), _read_key(request)
    fail_name, retry_after = authcache.failure_bucket(client=client, now=now)
    names = [fail_name] + ([authcache.record_key(parsed.key_id)] if isinstance(parsed, keys.ParsedKey) else [])
    values = await authcache.aget_many(names)
    if _blocked(values, fail_name):
        raise _throttled(retry_after)
    try:
        if isinstance(parsed, _Failure):
            raise parsed
        record = authcache.record_decode(values.get(names[1]))
        if record is None:
            record = await _shared_lookup(parsed.key_id)
        principal = _check(record, parsed, now)
    except _Failure as failure:
        _log(failure, client, parsed)
        if failure.counts:
            await authcache.afailure_record(fail_name)
        raise failure.error from None
    await services.aapikey_touch_last_used(api_key_id=principal.api_key_id, now=now)
    return principal


# --- DRF ----------------------------------------------------------------------------------------

class ApiKeyAuthentication(BaseAuthentication):
    """DRF authentication class: `request.user` becomes the ApiKeyPrincipal.

    No credentials at all → None, so AllowAny views still work and IsAuthenticated answers 401.
    """

    def authenticate(self, request):
        if not request.META.get("HTTP_AUTHORIZATION") and not _key_in_query(request):
            return None
        principal = authenticate_request(request)
        return principal, principal

    def authenticate_header(self, request) -> str:
        return WWW_AUTHENTICATE  # makes DRF answer 401 (not 403) for unauthenticated requests


class HasScope(BasePermission):
    """DRF permission: the view's `required_scope` must be on the key (403 insufficient_scope)."""

    def has_permission(self, request, view) -> bool:
        principal = request.user
        if not isinstance(principal, ApiKeyPrincipal):
            return False
        scope = getattr(view, "required_scope", None)
        if scope:
            require_scope(principal, scope)
        return True

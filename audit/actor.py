"""Who performs an action: an operator (from the request), or the system (CLI, jobs).

Services take `actor=` explicitly. `acting_as()` covers calls made *on behalf of* that actor by code
that does not take one (e.g. conversations' shred service suspending a tenant it could not delete),
so nested actions are attributed to the operator who started them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    kind: str  # "user" | "system"
    name: str
    user_id: int | None = None
    ip: str | None = None
    request_id: str = ""

    @classmethod
    def from_request(cls, request) -> Actor:
        user = getattr(request, "user", None)
        authenticated = bool(user is not None and getattr(user, "is_authenticated", False))
        return cls(kind="user" if authenticated else "anonymous",
                   name=user.get_username() if authenticated else "",
                   user_id=user.pk if authenticated else None, ip=client_ip(request),
                   request_id=getattr(request, "request_id", "") or "")


SYSTEM = Actor(kind="system", name="system")

_current: ContextVar[Actor | None] = ContextVar("fairway_audit_actor", default=None)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


def actor_resolve(actor: Actor | None) -> Actor:
    """The explicit actor, else the one set by `acting_as`, else SYSTEM."""
    return actor or _current.get() or SYSTEM


def client_ip(request) -> str | None:
    """REMOTE_ADDR. Behind a proxy, uvicorn's --proxy-headers (deploy/Procfile) already puts the
    client's address there, and only for trusted proxies: X-Forwarded-For is never read here."""
    address = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None  # unix socket, test client oddities: unknown rather than garbage

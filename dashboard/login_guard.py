"""Admin login lockout: cache counters per (username, address) and per address.

After FAIRWAY_LOGIN_FAILURE_LIMIT failures for one username from one address, that pair is locked
for FAIRWAY_LOGIN_LOCKOUT_SECONDS (an attacker elsewhere cannot lock the real operator out); after
FAIRWAY_LOGIN_ADDRESS_FAILURE_LIMIT failures from one address, the whole address is. While locked,
the password is not even checked. `add` + `incr` are atomic on Redis and local memory alike, so
concurrent guesses from several gateway workers are all counted.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


def _now() -> float:
    return time.time()


@dataclass(frozen=True, slots=True)
class LoginFailure:
    locked: bool  # this failure started a lockout (record it once)
    failures: int


def _pair(username: str, ip: str | None) -> str:
    # Hashed: usernames typed by strangers never land in Redis keys verbatim.
    digest = hashlib.sha256(f"{username.strip().lower()}\x00{ip or '-'}".encode()).hexdigest()[:32]
    return f"login:pair:{digest}"


def _address(ip: str | None) -> str:
    return f"login:addr:{ip or '-'}"


def _count(name: str, window: int) -> int:
    cache.add(name, 0, timeout=window)  # starts the window on the first failure only
    try:
        return cache.incr(name)
    except ValueError:  # expired between add and incr: this failure opens a new window
        cache.add(name, 1, timeout=window)
        return 1


def login_lock_remaining(*, username: str, ip: str | None) -> int:
    """Seconds until this username/address may try again (0: not locked)."""
    locks = cache.get_many([f"{_pair(username, ip)}:lock", f"{_address(ip)}:lock"])
    until = max(locks.values(), default=0)
    return max(0, int(until - _now()) + 1) if until > _now() else 0


def login_failure_record(*, username: str, ip: str | None) -> LoginFailure:
    window = settings.FAIRWAY_LOGIN_LOCKOUT_SECONDS
    until = _now() + window
    pair_failures = _count(_pair(username, ip), window)
    address_failures = _count(_address(ip), window)
    locked = False
    # `==`, not `>=`: only the failure that crosses the limit starts (and reports) the lockout.
    if pair_failures == settings.FAIRWAY_LOGIN_FAILURE_LIMIT:
        cache.set(f"{_pair(username, ip)}:lock", until, timeout=window)
        locked = True
    if address_failures == settings.FAIRWAY_LOGIN_ADDRESS_FAILURE_LIMIT:
        cache.set(f"{_address(ip)}:lock", until, timeout=window)
        locked = True
    return LoginFailure(locked=locked, failures=pair_failures)


def login_success_record(*, username: str, ip: str | None) -> None:
    """A correct password clears that pair's failures (not the address's: spraying still counts)."""
    cache.delete(_pair(username, ip))

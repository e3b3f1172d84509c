"""Startup checks for conversation encryption, run from AppConfig.ready() (so at ASGI startup too).

1. FAIRWAY_KEKS must parse (ids, base64 of 32 bytes); unset is only allowed for the embedded
   default, where settings generated a development KEK (logged here).
2. Outside the test suite, every KEK id that wraps a stored DEK must be configured and must
   actually unwrap it, so a wrong key is caught at start, not on a customer's first request.
Either failure raises ImproperlyConfigured: the process does not start.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection
from django.db.models import Min

from . import crypto

logger = logging.getLogger("fairway.conversations")

# Processes that never read conversations: the inference service holds no key (least privilege),
# and kek_generate must run before any key exists.
_KEYLESS_COMMANDS = {"runinference", "kek_generate"}

MISSING = ("FAIRWAY_KEKS is not set. With DATABASE_URL set, Fairway refuses to start without explicit "
           "key-encryption keys for conversation storage (there is no plaintext fallback). Set "
           "FAIRWAY_KEKS='k1:<base64 of 32 random bytes>' from your secret store; `manage.py kek_generate` "
           "or `python -c \"import base64,os;print('k1:'+base64.b64encode(os.urandom(32)).decode())\"` "
           "prints one.")


def _keyless_process() -> bool:
    return len(sys.argv) > 1 and sys.argv[1] in _KEYLESS_COMMANDS


def _under_pytest() -> bool:
    return "pytest" in sys.modules


def keys_check_on_start() -> None:
    if _keyless_process():
        return
    if settings.FAIRWAY_KEKS_SOURCE == "generated":
        logger.warning("Generated a development key-encryption key (KEK) for conversation storage at %s "
                       "(embedded default). Set FAIRWAY_KEKS in production; losing that file makes stored "
                       "conversations unreadable.", settings.VAR_DIR / "secrets" / "conversations_kek")
    if not settings.FAIRWAY_KEKS:
        raise ImproperlyConfigured(MISSING)
    from .keystore import keyring

    try:
        ring = keyring()
    except crypto.KeyConfigError as exc:
        raise ImproperlyConfigured(f"Conversation encryption: {exc}") from None
    if not _under_pytest():
        try:
            stored_keys_check(ring=ring)
        finally:
            connection.close()  # do not keep the startup thread's connection open


def _database_reachable() -> bool:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3") and not os.path.exists(db["NAME"]):
        return False  # never create an empty database file just to check keys
    return True


def stored_keys_check(*, ring: crypto.KeyRing) -> None:
    """Every KEK that wraps a stored DEK is configured and unwraps it (one DEK tried per KEK id)."""
    if not _database_reachable():
        return
    from .models import DataKey

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "database access during app initialization"
            usage = {row["kek_id"]: row["first"]
                     for row in DataKey.objects.order_by().values("kek_id").annotate(first=Min("pk"))}
            missing = sorted(kek_id for kek_id in usage if ring.get(kek_id) is None)
            if missing:
                raise ImproperlyConfigured(
                    f"Stored tenant data keys are wrapped by KEK id(s) {', '.join(missing)}, which FAIRWAY_KEKS "
                    f"(ids: {', '.join(ring.ids)}) does not contain. Add the old KEK back (after the primary) "
                    "and run `manage.py kek_rewrap` before removing it.")
            for kek_id, pk in usage.items():
                row = DataKey.objects.get(pk=pk)
                try:
                    crypto.dek_unwrap(kek=ring.get(kek_id), wrapped=row.wrapped_key, tenant_id=row.tenant_id,
                                      version=row.version)
                except crypto.DecryptionError:
                    raise ImproperlyConfigured(
                        f"FAIRWAY_KEKS entry '{kek_id}' cannot unwrap the tenant data keys stored under that id: "
                        "wrong key material for this id.") from None
    except DatabaseError:
        logger.debug("conversation key check skipped: database not ready (not migrated yet?)")

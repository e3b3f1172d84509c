"""Key lifecycle services: DEK rotation with batched re-encryption, and crypto-shredding.

DEK rotation never stops reads: each row names the DEK version that sealed it, so old and new rows
both open while batches move rows to the new version; the old versions are destroyed only when no
row points at them any more (the RESTRICT foreign keys make the database enforce that).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, RestrictedError

from . import codec, keystore
from .models import Conversation, DataKey, Message

logger = logging.getLogger("fairway.conversations")


@dataclass(frozen=True)
class RotationResult:
    version: int
    conversations: int
    messages: int
    destroyed_versions: tuple[int, ...]


def _reseal_conversations(tenant_id: UUID, new: keystore.ActiveKey, batch_size: int) -> int:
    done = 0
    while True:
        with transaction.atomic():  # row locks: a concurrent PATCH cannot be overwritten by stale fields
            rows = list(Conversation.objects.select_for_update().filter(tenant_id=tenant_id)
                        .exclude(dek_id=new.dek_id).order_by("pk")[:batch_size])
            for row in rows:
                old = keystore.datakey_get(dek_id=row.dek_id)
                for name, attr in ((codec.TITLE, "title_ct"), (codec.METADATA, "metadata_ct"),
                                   (codec.SYSTEM, "system_ct")):
                    value = codec.field_open(old, tenant_id=tenant_id, conversation_id=row.id, name=name,
                                             blob=getattr(row, attr))
                    setattr(row, attr, codec.field_seal(new, conversation_id=row.id, name=name,
                                                        value=value or None))
                row.dek_id = new.dek_id
            Conversation.objects.bulk_update(rows, ["dek", "title_ct", "metadata_ct", "system_ct"])
        done += len(rows)
        if len(rows) < batch_size:
            return done


def _reseal_messages(tenant_id: UUID, new: keystore.ActiveKey, batch_size: int) -> int:
    done = 0
    while True:  # messages are immutable: no row lock needed, re-sealed rows leave the filter
        rows = list(Message.objects.filter(tenant_id=tenant_id).exclude(dek_id=new.dek_id).order_by("pk")
                    .only("id", "conversation_id", "dek_id", "seq", "role", "body_ct")[:batch_size])
        for row in rows:
            content = codec.message_open(keystore.datakey_get(dek_id=row.dek_id), tenant_id=tenant_id,
                                         conversation_id=row.conversation_id, message_id=row.id, role=row.role,
                                         seq=row.seq, blob=row.body_ct)
            row.body_ct = codec.message_seal(new, conversation_id=row.conversation_id, message_id=row.id,
                                             role=row.role, seq=row.seq, content=content)
            row.dek_id = new.dek_id
        with transaction.atomic():
            Message.objects.bulk_update(rows, ["dek", "body_ct"])
        done += len(rows)
        if len(rows) < batch_size:
            return done


def _destroy_unused(tenant_id: UUID, keep_version: int) -> tuple[int, ...]:
    destroyed = []
    for row in DataKey.objects.filter(tenant_id=tenant_id, version__lt=keep_version).order_by("version"):
        try:
            with transaction.atomic():
                row.delete()
            destroyed.append(row.version)
        except (RestrictedError, IntegrityError):
            pass  # a late writer still used it; the next sweep moves those rows
    return tuple(destroyed)


def datakey_rotate(*, tenant_id: UUID, batch_size: int = 500, settle_seconds: float | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> RotationResult:
    """New DEK version for one tenant, rows re-encrypted in batches, old versions destroyed.

    `settle_seconds` (default: the DEK cache TTL) lets other processes' cached primary expire before
    the final sweep, so nothing keeps writing with an old version once it is gone.
    """
    created = keystore.datakey_create(tenant_id=tenant_id)
    keystore.cache_evict(tenant_id=tenant_id)
    new = keystore.datakey_get(dek_id=created.pk)
    conversations = _reseal_conversations(tenant_id, new, batch_size)
    messages = _reseal_messages(tenant_id, new, batch_size)
    sleep(settings.FAIRWAY_DEK_CACHE_SECONDS if settle_seconds is None else settle_seconds)
    destroyed: tuple[int, ...] = ()
    for _ in range(3):
        conversations += _reseal_conversations(tenant_id, new, batch_size)
        messages += _reseal_messages(tenant_id, new, batch_size)
        destroyed += _destroy_unused(tenant_id, new.version)
        if not DataKey.objects.filter(tenant_id=tenant_id, version__lt=new.version).exists():
            break
    keystore.cache_evict(tenant_id=tenant_id)
    logger.info("data key rotated: tenant=%s version=%d conversations=%d messages=%d destroyed=%s",
                tenant_id, new.version, conversations, messages, list(destroyed))
    return RotationResult(version=new.version, conversations=conversations, messages=messages,
                          destroyed_versions=destroyed)


@dataclass(frozen=True)
class ShredResult:
    data_keys: int
    conversations: int
    messages: int
    tenant_deleted: bool = False


def tenant_conversations_shred(*, tenant_id: UUID) -> ShredResult:
    """Destroy every DEK of the tenant and delete its conversations: nothing of it stays decryptable."""
    with transaction.atomic():
        messages = Message.objects.filter(tenant_id=tenant_id).delete()[0]
        conversations = Conversation.objects.filter(tenant_id=tenant_id).delete()[0]
        data_keys = DataKey.objects.filter(tenant_id=tenant_id).delete()[0]
    keystore.cache_evict(tenant_id=tenant_id)
    logger.info("tenant conversations shredded: tenant=%s data_keys=%d conversations=%d messages=%d",
                tenant_id, data_keys, conversations, messages)
    return ShredResult(data_keys=data_keys, conversations=conversations, messages=messages)


def tenant_shred(*, tenant) -> ShredResult:
    """Delete a tenant: crypto-shred its conversations first (always, in its own transaction), then
    delete the tenant and its API keys. Billing records PROTECT a tenant that has usage (they must be
    kept); such a tenant is suspended with every key revoked instead, its conversations still gone."""
    from tenants import selectors as tenant_selectors
    from tenants import services as tenant_services

    tenant_id, key_ids = tenant.pk, tenant_selectors.apikey_key_ids_for_tenant(tenant=tenant)
    result = tenant_conversations_shred(tenant_id=tenant_id)
    try:
        with transaction.atomic():
            tenant.delete()  # (sets tenant.pk to None)
    except ProtectedError:
        tenant_services.tenant_suspend(tenant=tenant)
        for api_key in tenant_selectors.apikey_list_for_tenant(tenant=tenant).filter(revoked_at__isnull=True):
            tenant_services.apikey_revoke(api_key=api_key)
        logger.info("tenant crypto-shredded, kept for its billing records (suspended, keys revoked): %s",
                    tenant.slug)
        return result
    tenant_services.auth_cache_invalidate(key_ids=key_ids)
    logger.info("tenant deleted (crypto-shredded): %s", tenant.slug)
    return ShredResult(data_keys=result.data_keys, conversations=result.conversations, messages=result.messages,
                       tenant_deleted=True)

"""Writes: conversations, messages and the turn lock. Keyword-only, typed, `<entity>_<action>`.

New content is always sealed under the tenant's primary DEK. Appends run in one transaction holding
the conversation row (SELECT … FOR UPDATE on PostgreSQL; SQLite serialises writers), so sequence
numbers never collide and a turn's user message and reply stay adjacent.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from . import codec, errors, keystore
from .models import Conversation, Message
from .selectors import ConversationView, MessageView, conversation_open

logger = logging.getLogger("fairway.conversations")

_UNSET = object()


def _now() -> datetime:
    """The clock; tests patch it (lease expiry) instead of sleeping."""
    return timezone.now()


def _seal_fields(row: Conversation, key: keystore.ActiveKey, values: dict) -> None:
    row.dek_id = key.dek_id
    row.title_ct = codec.field_seal(key, conversation_id=row.id, name=codec.TITLE, value=values.get(codec.TITLE))
    row.metadata_ct = codec.field_seal(key, conversation_id=row.id, name=codec.METADATA,
                                       value=values.get(codec.METADATA) or None)
    row.system_ct = codec.field_seal(key, conversation_id=row.id, name=codec.SYSTEM,
                                     value=values.get(codec.SYSTEM))


def _retry_on_stale_key(tenant_id: UUID, write):
    """A cached primary DEK may have been destroyed by a rotation elsewhere: refresh once and retry."""
    try:
        return write()
    except IntegrityError:
        keystore.cache_evict(tenant_id=tenant_id)
        return write()


def conversation_create(*, tenant_id: UUID, title: str | None = None, metadata: dict | None = None,
                        system_prompt: str | None = None, now: datetime | None = None) -> ConversationView:
    now = now or _now()

    def write() -> Conversation:
        row = Conversation(tenant_id=tenant_id, created_at=now, updated_at=now)
        _seal_fields(row, keystore.datakey_primary(tenant_id=tenant_id),
                     {codec.TITLE: title, codec.METADATA: metadata, codec.SYSTEM: system_prompt})
        with transaction.atomic():
            row.save(force_insert=True)
        return row

    return conversation_open(row=_retry_on_stale_key(tenant_id, write))


def conversation_update(*, tenant_id: UUID, conversation_id: UUID, title=_UNSET, metadata=_UNSET,
                        system_prompt=_UNSET, now: datetime | None = None) -> ConversationView:
    """Change only the given fields; all three are re-sealed under the current primary DEK."""
    changes = {name: value for name, value in ((codec.TITLE, title), (codec.METADATA, metadata),
                                               (codec.SYSTEM, system_prompt)) if value is not _UNSET}

    def write() -> Conversation:
        with transaction.atomic():
            row = Conversation.objects.select_for_update().filter(pk=conversation_id, tenant_id=tenant_id).first()
            if row is None:
                raise errors.not_found(conversation_id)
            values = {**_fields(row), **changes}
            _seal_fields(row, keystore.datakey_primary(tenant_id=tenant_id), values)
            row.updated_at = now or _now()
            row.save(update_fields=["dek", "title_ct", "metadata_ct", "system_ct", "updated_at"])
        return row

    return conversation_open(row=_retry_on_stale_key(tenant_id, write))


def _fields(row: Conversation) -> dict:
    view = conversation_open(row=row)
    return {codec.TITLE: view.title, codec.METADATA: view.metadata, codec.SYSTEM: view.system_prompt}


def conversation_delete(*, tenant_id: UUID, conversation_id: UUID) -> None:
    with transaction.atomic():
        deleted, _ = Conversation.objects.filter(pk=conversation_id, tenant_id=tenant_id).delete()
    if not deleted:
        raise errors.not_found(conversation_id)


# --- messages -----------------------------------------------------------------------------------

def _locked_by_other(row: Conversation, token: UUID | None, now: datetime) -> bool:
    held = row.lock_token is not None and row.lock_expires_at is not None and row.lock_expires_at > now
    return held and row.lock_token != token


def message_append(*, tenant_id: UUID, conversation_id: UUID, messages: Sequence[dict],
                   lock_token: UUID | None = None, release: bool = False,
                   now: datetime | None = None) -> list[MessageView]:
    """Append messages ({"role", "content"}) atomically after the last one.

    Refused (409) while another request holds the turn lock; `lock_token` is the caller's own lock,
    and `release` drops it in the same transaction (the end of a turn).
    """
    now = now or _now()

    def write() -> list[MessageView]:
        with transaction.atomic():
            row = Conversation.objects.select_for_update().filter(pk=conversation_id, tenant_id=tenant_id).first()
            if row is None:
                raise errors.not_found(conversation_id)
            if _locked_by_other(row, lock_token, now):
                if lock_token is None:
                    raise errors.busy(conversation_id)
                # Our lease lapsed and another turn took over: still store (never lose a reply).
                logger.warning("conversation lock lost before storing: conversation=%s", conversation_id)
            key = keystore.datakey_primary(tenant_id=tenant_id)
            created = []
            for offset, message in enumerate(messages):
                seq, message_id = row.message_count + offset, uuid.uuid4()
                body = codec.message_seal(key, conversation_id=row.id, message_id=message_id, role=message["role"],
                                          seq=seq, content=message["content"])
                created.append(Message(id=message_id, conversation_id=row.id, tenant_id=tenant_id, dek_id=key.dek_id,
                                       seq=seq, role=message["role"], body_ct=body, created_at=now))
            Message.objects.bulk_create(created)
            update = {"message_count": row.message_count + len(created)}
            if created:
                update["updated_at"] = now
            if release and row.lock_token == lock_token:
                update.update(lock_token=None, lock_expires_at=None)
            Conversation.objects.filter(pk=row.pk).update(**update)
        return [MessageView(id=m.id, conversation_id=m.conversation_id, seq=m.seq, role=m.role,
                            content=message["content"], created_at=now) for m, message in zip(created, messages)]

    return _retry_on_stale_key(tenant_id, write)


# --- turn lock (a lease on the conversation row; works across gateway processes) ---------------

def conversation_lock(*, tenant_id: UUID, conversation_id: UUID, now: datetime | None = None) -> UUID:
    """Take the turn lock with one conditional UPDATE; 404 if not the tenant's, 409 if held."""
    now = now or _now()
    token = uuid.uuid4()
    free = Q(lock_token__isnull=True) | Q(lock_expires_at__isnull=True) | Q(lock_expires_at__lte=now)
    lease = timedelta(seconds=settings.FAIRWAY_CONVERSATION_LOCK_SECONDS)
    taken = (Conversation.objects.filter(Q(pk=conversation_id, tenant_id=tenant_id) & free)
             .update(lock_token=token, lock_expires_at=now + lease))
    if taken:
        return token
    if Conversation.objects.filter(pk=conversation_id, tenant_id=tenant_id).exists():
        raise errors.busy(conversation_id)
    raise errors.not_found(conversation_id, param="conversation")


def conversation_lock_renew(*, conversation_id: UUID, lock_token: UUID, now: datetime | None = None) -> bool:
    """Extend our lease; False if it is no longer ours (lapsed and taken, or the conversation is gone)."""
    lease = timedelta(seconds=settings.FAIRWAY_CONVERSATION_LOCK_SECONDS)
    return Conversation.objects.filter(pk=conversation_id, lock_token=lock_token).update(
        lock_expires_at=(now or _now()) + lease) > 0


def conversation_unlock(*, conversation_id: UUID, lock_token: UUID) -> None:
    Conversation.objects.filter(pk=conversation_id, lock_token=lock_token).update(lock_token=None,
                                                                                  lock_expires_at=None)

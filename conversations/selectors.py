"""Reads: decrypted views of one tenant's conversations. Keyword-only; every query is tenant-scoped.

Unknown and foreign ids raise the same 404, so no endpoint can tell "another tenant's" from "none".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import CharField, Q
from django.db.models.functions import Cast

from . import codec, crypto, errors
from .keystore import datakey_get
from .models import Conversation, Message


@dataclass(frozen=True)
class ConversationView:
    id: UUID
    title: str | None
    metadata: dict
    system_prompt: str | None
    message_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MessageView:
    id: UUID
    conversation_id: UUID
    seq: int
    role: str
    content: str
    created_at: datetime


@dataclass(frozen=True)
class Page:
    items: list
    has_more: bool


def conversation_open(*, row: Conversation) -> ConversationView:
    key = datakey_get(dek_id=row.dek_id)
    fields = {name: codec.field_open(key, tenant_id=row.tenant_id, conversation_id=row.id, name=name, blob=blob)
              for name, blob in ((codec.TITLE, row.title_ct), (codec.METADATA, row.metadata_ct),
                                 (codec.SYSTEM, row.system_ct))}
    return ConversationView(id=row.id, message_count=row.message_count, created_at=row.created_at,
                            updated_at=row.updated_at, **fields)


def _row(*, tenant_id: UUID, conversation_id: UUID) -> Conversation:
    row = Conversation.objects.filter(pk=conversation_id, tenant_id=tenant_id).first()
    if row is None:
        raise errors.not_found(conversation_id)
    return row


def conversation_get(*, tenant_id: UUID, conversation_id: UUID) -> ConversationView:
    return conversation_open(row=_row(tenant_id=tenant_id, conversation_id=conversation_id))


def conversation_system_prompt(*, tenant_id: UUID, conversation_id: UUID) -> str | None:
    """Only what a turn needs from the conversation row (one narrow query, one decryption)."""
    row = (Conversation.objects.filter(pk=conversation_id, tenant_id=tenant_id)
           .values_list("dek_id", "system_ct").first())
    if row is None:
        raise errors.not_found(conversation_id, param="conversation")
    return codec.field_open(datakey_get(dek_id=row[0]), tenant_id=tenant_id, conversation_id=conversation_id,
                            name=codec.SYSTEM, blob=row[1])


def conversation_list(*, tenant_id: UUID, limit: int = 20, after: UUID | None = None) -> Page:
    """Newest first; `after` is the id of the last conversation of the previous page."""
    rows = Conversation.objects.filter(tenant_id=tenant_id).order_by("-created_at", "-id")
    if after is not None:
        cursor = Conversation.objects.filter(pk=after, tenant_id=tenant_id).values("created_at", "id").first()
        if cursor is None:
            raise errors.bad_cursor()
        rows = rows.filter(Q(created_at__lt=cursor["created_at"]) | Q(created_at=cursor["created_at"],
                                                                         id__lt=cursor["id"]))
    page = list(rows[:limit + 1])
    return Page(items=[conversation_open(row=row) for row in page[:limit]], has_more=len(page) > limit)


_MESSAGE_FIELDS = ("id", "conversation_id", "dek_id", "seq", "role", "body_ct", "created_at")


def _message_open(tenant_id: UUID, values: tuple) -> MessageView:
    message_id, conversation_id, dek_id, seq, role, blob, created_at = values
    content = codec.message_open(datakey_get(dek_id=dek_id), tenant_id=tenant_id, conversation_id=conversation_id,
                                 message_id=message_id, role=role, seq=seq, blob=blob)
    return MessageView(id=message_id, conversation_id=conversation_id, seq=seq, role=role, content=content,
                       created_at=created_at)


def message_list(*, tenant_id: UUID, conversation_id: UUID, limit: int = 20, after: UUID | None = None,
                 order: str = "asc") -> Page:
    _row(tenant_id=tenant_id, conversation_id=conversation_id)  # 404 before anything else
    rows = Message.objects.filter(conversation_id=conversation_id, tenant_id=tenant_id)
    if after is not None:
        seq = rows.filter(pk=after).values_list("seq", flat=True).first()
        if seq is None:
            raise errors.bad_cursor()
        rows = rows.filter(seq__gt=seq) if order == "asc" else rows.filter(seq__lt=seq)
    rows = rows.order_by("seq" if order == "asc" else "-seq").values_list(*_MESSAGE_FIELDS)
    page = list(rows[:limit + 1])
    return Page(items=[_message_open(tenant_id, values) for values in page[:limit]], has_more=len(page) > limit)


def message_history_batches(*, tenant_id: UUID, conversation_id: UUID, batch_size: int = 256
                            ) -> Iterator[list[dict]]:
    """Decrypted history, newest first, in batches: prompt building stops reading once the context is full.

    The hot path of every `conversation` turn: only the columns decryption needs, one key lookup per
    DEK version per batch.
    """
    # The id as text (32 hex on SQLite, dashed on PostgreSQL): 16 raw bytes for the AAD, no UUID objects.
    rows = (Message.objects.filter(conversation_id=conversation_id, tenant_id=tenant_id).order_by("-seq")
            .annotate(raw_id=Cast("id", CharField())))
    open_ = crypto.history_opener(tenant_id=tenant_id, conversation_id=conversation_id)
    before = None
    while True:
        page = rows if before is None else rows.filter(seq__lt=before)
        values = list(page.values_list("raw_id", "dek_id", "seq", "role", "body_ct")[:batch_size])
        if not values:
            return
        keys = {dek_id: datakey_get(dek_id=dek_id) for dek_id in {v[1] for v in values}}
        yield [{"role": role, "content": open_(keys[dek_id].cipher, keys[dek_id].version,
                                               bytes.fromhex(raw_id.replace("-", "")), role, seq,
                                               bytes(blob)).decode()}
               for raw_id, dek_id, seq, role, blob in values]
        if len(values) < batch_size:
            return
        before = values[-1][2]

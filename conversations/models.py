"""Encrypted conversation storage. Plain data: behaviour lives in services/selectors/keystore.

No column holds plaintext content: titles, metadata, system prompts and message bodies are
AES-256-GCM blobs under the tenant's data key (DEK); the DEK itself is stored only wrapped by a KEK.
Rows point at the DEK version that encrypted them, so a DEK rotation can re-encrypt in batches
while reads keep working, and an old version cannot be deleted while a row still needs it.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from tenants.models import Tenant


class DataKey(models.Model):
    """One version of a tenant's DEK, wrapped by the KEK named in `kek_id`. Highest version = primary."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="data_keys")
    version = models.PositiveIntegerField()
    kek_id = models.CharField(max_length=32, db_index=True)
    wrapped_key = models.BinaryField(editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    rewrapped_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["tenant_id", "-version"]
        constraints = [models.UniqueConstraint(fields=["tenant", "version"], name="conversations_datakey_version")]

    def __str__(self) -> str:
        return f"dek v{self.version} ({self.kek_id})"


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="conversations")
    # RESTRICT: a DEK version cannot go while a row needs it (unless the row goes in the same delete).
    dek = models.ForeignKey(DataKey, on_delete=models.RESTRICT, related_name="+")
    title_ct = models.BinaryField(null=True, editable=False)
    metadata_ct = models.BinaryField(null=True, editable=False)
    system_ct = models.BinaryField(null=True, editable=False)
    message_count = models.PositiveIntegerField(default=0)  # also the next message's seq
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    # Turn lock (a lease): held across one generation so concurrent turns never interleave.
    lock_token = models.UUIDField(null=True, blank=True, editable=False)
    lock_expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at", "-id"], name="conversations_tenant_newest")]

    def __str__(self) -> str:
        return str(self.id)  # never the title: it is encrypted for a reason


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "user"
        ASSISTANT = "assistant", "assistant"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")  # batch rotation/shred
    dek = models.ForeignKey(DataKey, on_delete=models.RESTRICT, related_name="+")
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    body_ct = models.BinaryField(editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["conversation_id", "seq"]
        constraints = [models.UniqueConstraint(fields=["conversation", "seq"], name="conversations_message_seq")]
        indexes = [models.Index(fields=["tenant", "dek"], name="conversations_msg_tenant_dek")]

    def __str__(self) -> str:
        return f"{self.role} #{self.seq}"


class TenantEncryption(Tenant):
    """Proxy of Tenant for the admin's encryption page (rotate DEK, crypto-shred) without touching tenants/."""

    class Meta:
        proxy = True
        verbose_name = "tenant encryption"
        verbose_name_plural = "tenant encryption"

"""Encryption at rest: no plaintext in rows, ciphertexts bound to their row and tenant, rotation, shredding."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from django.db import connection

from conversations import codec, crypto, keystore, lifecycle, selectors, services
from conversations.models import Conversation, DataKey, Message

from .conftest import MARKER


def _conversation(tenant, n_messages=4):
    view = services.conversation_create(tenant_id=tenant.pk, title=f"title {MARKER}", metadata={"k": MARKER},
                                        system_prompt=f"system {MARKER}")
    roles = ["user", "assistant"]
    services.message_append(tenant_id=tenant.pk, conversation_id=view.id,
                            messages=[{"role": roles[i % 2], "content": f"msg {i} {MARKER} ünï✓"}
                                      for i in range(n_messages)])
    return view


def _read_all(tenant, conversation_id):
    view = selectors.conversation_get(tenant_id=tenant.pk, conversation_id=conversation_id)
    page = selectors.message_list(tenant_id=tenant.pk, conversation_id=conversation_id, limit=100)
    return view, [m.content for m in page.items]


def _all_database_bytes() -> list[bytes]:
    """Every value of every table, as bytes (text encoded, binary raw)."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, (bytes, bytearray, memoryview)):
                        found.append(bytes(value))
                    elif value is not None:
                        found.append(str(value).encode())
    return found


def test_raw_rows_and_database_files_hold_no_plaintext(alice):
    view = _conversation(alice.tenant)
    assert _read_all(alice.tenant, view.id)[0].title == f"title {MARKER}"  # it does decrypt
    needles = [MARKER.encode(), MARKER.encode("utf-16-le"), base64.b64encode(MARKER.encode())]
    for value in _all_database_bytes():
        assert not any(needle in value for needle in needles)
    if connection.vendor == "sqlite":  # also the files themselves (including the WAL)
        name = Path(connection.settings_dict["NAME"])
        for path in (name, name.with_name(name.name + "-wal")):
            if path.exists():
                assert MARKER.encode() not in path.read_bytes()
    blob = bytes(Message.objects.first().body_ct)
    assert blob[:1] == crypto.FORMAT and len(blob) >= 1 + 12 + 16


def test_every_seal_uses_a_fresh_nonce(alice):
    view = services.conversation_create(tenant_id=alice.tenant.pk)
    services.message_append(tenant_id=alice.tenant.pk, conversation_id=view.id,
                            messages=[{"role": "user", "content": "same"}] * 2)
    blobs = [bytes(b) for b in Message.objects.values_list("body_ct", flat=True)]
    assert blobs[0][1:13] != blobs[1][1:13]


def test_ciphertext_moved_to_another_message_row_fails(alice):
    view = _conversation(alice.tenant)
    first, second = Message.objects.filter(conversation_id=view.id).order_by("seq")[:2]
    assert len(list(selectors.message_history_batches(tenant_id=alice.tenant.pk, conversation_id=view.id))[0]) == 4
    Message.objects.filter(pk=second.pk).update(body_ct=first.body_ct)
    with pytest.raises(crypto.DecryptionError):
        _read_all(alice.tenant, view.id)
    with pytest.raises(crypto.DecryptionError):  # the per-turn history path checks the same binding
        list(selectors.message_history_batches(tenant_id=alice.tenant.pk, conversation_id=view.id))


def test_ciphertext_moved_to_same_role_other_conversation_fails(alice):
    one, two = _conversation(alice.tenant), _conversation(alice.tenant)
    source = Message.objects.get(conversation_id=one.id, seq=0)
    Message.objects.filter(conversation_id=two.id, seq=0).update(body_ct=source.body_ct, dek=source.dek)
    with pytest.raises(crypto.DecryptionError):
        _read_all(alice.tenant, two.id)


def test_ciphertext_moved_to_another_tenant_fails_even_with_its_key_row(alice, bob):
    mine, theirs = _conversation(alice.tenant), _conversation(bob.tenant)
    source = Message.objects.get(conversation_id=mine.id, seq=0)
    # Copy both the blob and the DEK pointer: the AAD still names bob's tenant and conversation.
    Message.objects.filter(conversation_id=theirs.id, seq=0).update(body_ct=source.body_ct, dek=source.dek)
    with pytest.raises(crypto.DecryptionError):
        _read_all(bob.tenant, theirs.id)
    title = Conversation.objects.get(pk=mine.id)
    Conversation.objects.filter(pk=theirs.id).update(title_ct=title.title_ct)
    with pytest.raises(crypto.DecryptionError):
        selectors.conversation_get(tenant_id=bob.tenant.pk, conversation_id=theirs.id)


def test_field_ciphertext_swapped_between_fields_fails(alice):
    view = _conversation(alice.tenant)
    row = Conversation.objects.get(pk=view.id)
    Conversation.objects.filter(pk=view.id).update(title_ct=row.system_ct)
    with pytest.raises(crypto.DecryptionError):
        selectors.conversation_get(tenant_id=alice.tenant.pk, conversation_id=view.id)


def test_role_tampering_fails(alice):
    view = _conversation(alice.tenant)
    Message.objects.filter(conversation_id=view.id, seq=0).update(role="assistant")
    with pytest.raises(crypto.DecryptionError):
        _read_all(alice.tenant, view.id)


def test_wrapped_dek_moved_to_another_tenant_fails(alice, bob):
    _conversation(alice.tenant), _conversation(bob.tenant)
    alice_key = DataKey.objects.get(tenant=alice.tenant)
    DataKey.objects.filter(tenant=bob.tenant).update(wrapped_key=alice_key.wrapped_key)
    keystore.cache_evict()
    with pytest.raises(crypto.DecryptionError):
        keystore.datakey_primary(tenant_id=bob.tenant.pk)


def test_kek_rotation_rewraps_without_touching_data(alice, bob, settings):
    views = [_conversation(alice.tenant), _conversation(bob.tenant)]
    before = {m.pk: bytes(m.body_ct) for m in Message.objects.all()}
    old = settings.FAIRWAY_KEKS
    settings.FAIRWAY_KEKS = crypto.kek_generate_line("t2") + "," + old  # new primary first
    keystore.cache_evict()
    assert keystore.kek_rewrap_all(batch_size=1) == {"t1": 2}
    assert set(DataKey.objects.values_list("kek_id", flat=True)) == {"t2"}
    assert {m.pk: bytes(m.body_ct) for m in Message.objects.all()} == before  # no data re-encryption
    settings.FAIRWAY_KEKS = settings.FAIRWAY_KEKS.split(",")[0]  # the old KEK is gone now
    keystore.cache_evict()
    for party, view in zip((alice, bob), views):
        assert _read_all(party.tenant, view.id)[1][0] == f"msg 0 {MARKER} ünï✓"
    services.message_append(tenant_id=alice.tenant.pk, conversation_id=views[0].id,
                            messages=[{"role": "user", "content": "after"}])
    assert _read_all(alice.tenant, views[0].id)[1][-1] == "after"


def test_dek_rotation_reencrypts_in_batches_while_reads_work(alice, bob, monkeypatch):
    view = _conversation(alice.tenant, n_messages=7)
    other = _conversation(bob.tenant)
    expected = _read_all(alice.tenant, view.id)
    old_blobs = {m.pk: bytes(m.body_ct) for m in Message.objects.filter(tenant=alice.tenant)}
    reads_during = []
    original = lifecycle._reseal_messages

    def reseal_and_read(tenant_id, new, batch_size):
        # Mid-rotation: rows under v1 and v2 coexist and both read.
        reads_during.append(_read_all(alice.tenant, view.id))
        return original(tenant_id, new, batch_size)

    monkeypatch.setattr(lifecycle, "_reseal_messages", reseal_and_read)
    result = lifecycle.datakey_rotate(tenant_id=alice.tenant.pk, batch_size=3, settle_seconds=0)
    assert result.version == 2 and result.messages == 7 and result.conversations == 1
    assert result.destroyed_versions == (1,)
    assert list(DataKey.objects.filter(tenant=alice.tenant).values_list("version", flat=True)) == [2]
    assert all(bytes(m.body_ct) != old_blobs[m.pk] for m in Message.objects.filter(tenant=alice.tenant))
    assert reads_during and all(r[1] == expected[1] for r in reads_during)
    keystore.cache_evict()
    assert _read_all(alice.tenant, view.id) == expected
    assert _read_all(bob.tenant, other.id)[1][0].startswith("msg 0")  # other tenants untouched
    assert DataKey.objects.get(tenant=bob.tenant).version == 1


def test_dek_rotation_catches_rows_written_with_a_stale_primary(alice):
    view = _conversation(alice.tenant)
    stale = keystore.datakey_primary(tenant_id=alice.tenant.pk)

    def late_writer(seconds):  # another process still caching v1 writes during the settle window
        key = stale
        message_id = __import__("uuid").uuid4()
        row = Conversation.objects.get(pk=view.id)
        Message.objects.create(id=message_id, conversation_id=view.id, tenant_id=alice.tenant.pk, dek_id=key.dek_id,
                               seq=row.message_count, role="user", body_ct=codec.message_seal(
                                   key, conversation_id=view.id, message_id=message_id, role="user",
                                   seq=row.message_count, content="late"))
        Conversation.objects.filter(pk=view.id).update(message_count=row.message_count + 1)

    result = lifecycle.datakey_rotate(tenant_id=alice.tenant.pk, settle_seconds=0, sleep=late_writer)
    assert result.destroyed_versions == (1,)
    assert _read_all(alice.tenant, view.id)[1][-1] == "late"


def test_old_dek_version_cannot_be_destroyed_while_rows_use_it(alice):
    _conversation(alice.tenant)
    keystore.datakey_create(tenant_id=alice.tenant.pk)
    assert lifecycle._destroy_unused(alice.tenant.pk, keep_version=2) == ()
    assert DataKey.objects.filter(tenant=alice.tenant).count() == 2


def test_crypto_shredding_leaves_nothing_decryptable(alice, bob):
    view = _conversation(alice.tenant)
    survivor = _conversation(bob.tenant)
    tenant_id = alice.tenant.pk
    saved = [(m.conversation_id, m.id, m.role, m.seq, bytes(m.body_ct))
             for m in Message.objects.filter(tenant_id=tenant_id)]
    result = lifecycle.tenant_shred(tenant=alice.tenant)
    assert (result.data_keys, result.conversations, result.messages) == (1, 1, 4)
    from tenants.models import Tenant
    assert not Tenant.objects.filter(pk=tenant_id).exists()
    assert not DataKey.objects.filter(tenant_id=tenant_id).exists()
    assert not Conversation.objects.filter(pk=view.id).exists()
    assert not Message.objects.filter(tenant_id=tenant_id).exists()
    assert all(key.tenant_id != tenant_id for _, key in keystore._by_id.values())  # not even cached
    # A copy of the ciphertexts (a backup, say) opens under no key that still exists.
    for dek in DataKey.objects.all():
        key = keystore.datakey_get(dek_id=dek.pk)
        for conversation_id, message_id, role, seq, blob in saved:
            with pytest.raises(crypto.DecryptionError):
                codec.message_open(key, tenant_id=tenant_id, conversation_id=conversation_id,
                                   message_id=message_id, role=role, seq=seq, blob=blob)
    assert _read_all(bob.tenant, survivor.id)[1][0].startswith("msg 0")


def test_shred_keep_tenant_then_new_conversations_get_a_new_key(alice):
    _conversation(alice.tenant)
    old = bytes(DataKey.objects.get(tenant=alice.tenant).wrapped_key)
    lifecycle.tenant_conversations_shred(tenant_id=alice.tenant.pk)
    view = _conversation(alice.tenant)
    assert bytes(DataKey.objects.get(tenant=alice.tenant).wrapped_key) != old
    assert _read_all(alice.tenant, view.id)[0].metadata == {"k": MARKER}


def test_shredding_a_tenant_with_billing_records_keeps_the_row_but_not_the_data(alice):
    from billing.models import UsageRecord
    from tenants.models import ApiKey, Tenant

    view = _conversation(alice.tenant)
    UsageRecord.objects.create(request_id="req_1", tenant=alice.tenant, model="m", endpoint="chat.completions")
    result = lifecycle.tenant_shred(tenant=alice.tenant)
    assert not result.tenant_deleted and (result.data_keys, result.conversations) == (1, 1)
    tenant = Tenant.objects.get(pk=alice.tenant.pk)  # kept: invoices must survive
    assert tenant.status == Tenant.Status.SUSPENDED
    assert not ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True).exists()
    assert not DataKey.objects.filter(tenant=tenant).exists() and not Conversation.objects.filter(pk=view.id).exists()

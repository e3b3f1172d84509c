"""The turn lock and appends under concurrency (threads stand in for gateway processes)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection

from conversations import selectors, services
from gateway.errors import ApiError


def _messages(tenant, conversation_id):
    return selectors.message_list(tenant_id=tenant.pk, conversation_id=conversation_id, limit=100).items


def test_lock_is_exclusive_until_released_or_expired(alice, monkeypatch, settings):
    settings.FAIRWAY_CONVERSATION_LOCK_SECONDS = 30
    view = services.conversation_create(tenant_id=alice.tenant.pk)
    first = services.conversation_lock(tenant_id=alice.tenant.pk, conversation_id=view.id)
    with pytest.raises(ApiError) as busy:
        services.conversation_lock(tenant_id=alice.tenant.pk, conversation_id=view.id)
    assert busy.value.status == 409
    with pytest.raises(ApiError) as append_busy:
        services.message_append(tenant_id=alice.tenant.pk, conversation_id=view.id,
                                messages=[{"role": "user", "content": "x"}])
    assert append_busy.value.status == 409
    assert services.conversation_lock_renew(conversation_id=view.id, lock_token=first)
    # A crashed holder: once the lease lapses, the next request takes over.
    later = services._now() + timedelta(seconds=31)
    second = services.conversation_lock(tenant_id=alice.tenant.pk, conversation_id=view.id, now=later)
    assert not services.conversation_lock_renew(conversation_id=view.id, lock_token=first)
    # The late first holder still stores its turn (nothing lost) but cannot release the new lock.
    services.message_append(tenant_id=alice.tenant.pk, conversation_id=view.id, lock_token=first, release=True,
                            messages=[{"role": "user", "content": "late"}, {"role": "assistant", "content": "r"}],
                            now=later)
    with pytest.raises(ApiError):
        services.conversation_lock(tenant_id=alice.tenant.pk, conversation_id=view.id, now=later)
    services.message_append(tenant_id=alice.tenant.pk, conversation_id=view.id, lock_token=second, release=True,
                            messages=[], now=later)
    services.conversation_lock(tenant_id=alice.tenant.pk, conversation_id=view.id, now=later)
    assert [m.content for m in _messages(alice.tenant, view.id)] == ["late", "r"]


def test_lock_on_foreign_or_unknown_conversation_is_404(alice, bob):
    theirs = services.conversation_create(tenant_id=bob.tenant.pk)
    with pytest.raises(ApiError) as caught:
        services.conversation_lock(tenant_id=alice.tenant.pk, conversation_id=theirs.id)
    assert caught.value.status == 404
    services.conversation_lock(tenant_id=bob.tenant.pk, conversation_id=theirs.id)  # untouched, still free


def test_concurrent_appends_get_unique_contiguous_positions(transactional_db, alice):
    view = services.conversation_create(tenant_id=alice.tenant.pk)
    workers, per_worker = 4, 5
    barrier, failures = threading.Barrier(workers), []

    def work(worker):
        barrier.wait()
        try:
            for i in range(per_worker):
                services.message_append(tenant_id=alice.tenant.pk, conversation_id=view.id,
                                        messages=[{"role": "user", "content": f"w{worker}-{i}-q"},
                                                  {"role": "assistant", "content": f"w{worker}-{i}-a"}])
        except Exception as exc:  # noqa: BLE001
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    messages = _messages(alice.tenant, view.id)
    assert [m.seq for m in messages] == list(range(2 * workers * per_worker))
    for question, answer in zip(messages[::2], messages[1::2]):  # each pair stayed together
        assert question.content[:-1] + "a" == answer.content
    assert selectors.conversation_get(tenant_id=alice.tenant.pk, conversation_id=view.id).message_count == 40

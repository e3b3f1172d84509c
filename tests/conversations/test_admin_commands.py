"""Admin pages show no plaintext or key material; key lifecycle commands and admin actions work."""

from __future__ import annotations

import base64
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from conversations import crypto, keystore, selectors, services
from conversations.models import Conversation, DataKey, Message
from tenants.models import Tenant

from .conftest import MARKER


def _conversation(tenant):
    view = services.conversation_create(tenant_id=tenant.pk, title=MARKER, metadata={"m": MARKER},
                                        system_prompt=MARKER)
    services.message_append(tenant_id=tenant.pk, conversation_id=view.id,
                            messages=[{"role": "user", "content": MARKER}])
    return view


@pytest.fixture
def operator(db):
    from django.contrib.auth.models import User

    User.objects.create_superuser("op", "op@example.com", "pw")
    client = Client()
    client.login(username="op", password="pw")
    return client


def test_admin_pages_show_no_plaintext_or_keys(operator, alice):
    view = _conversation(alice.tenant)
    wrapped = base64.b64encode(bytes(DataKey.objects.get().wrapped_key)).decode()
    pages = ["/admin/conversations/conversation/", f"/admin/conversations/conversation/{view.id}/change/",
             "/admin/conversations/datakey/", f"/admin/conversations/datakey/{DataKey.objects.get().pk}/change/",
             "/admin/conversations/tenantencryption/"]
    for url in pages:
        response = operator.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert MARKER not in html and wrapped not in html, url
        if "/conversation/" in url:
            assert str(view.id) in html  # the page did render the object


def test_admin_shred_action_asks_then_shreds(operator, alice, bob):
    _conversation(alice.tenant), _conversation(bob.tenant)
    url = "/admin/conversations/tenantencryption/"
    data = {"action": "crypto_shred", "_selected_action": [str(alice.tenant.pk)]}
    confirm = operator.post(url, data)
    assert confirm.status_code == 200 and b"cannot be undone" in confirm.content
    assert Tenant.objects.filter(pk=alice.tenant.pk).exists()
    done = operator.post(url, {**data, "confirm": "yes"})
    assert done.status_code == 302
    assert not Tenant.objects.filter(pk=alice.tenant.pk).exists()
    assert not DataKey.objects.filter(tenant_id=alice.tenant.pk).exists()
    assert Conversation.objects.filter(tenant=bob.tenant).count() == 1


def test_admin_rotate_action(operator, alice):
    view = _conversation(alice.tenant)
    response = operator.post("/admin/conversations/tenantencryption/",
                             {"action": "rotate_data_key", "_selected_action": [str(alice.tenant.pk)]})
    assert response.status_code == 302
    assert list(DataKey.objects.filter(tenant=alice.tenant).values_list("version", flat=True)) == [2]
    keystore.cache_evict()
    assert selectors.conversation_get(tenant_id=alice.tenant.pk, conversation_id=view.id).title == MARKER


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_kek_generate_prints_a_usable_entry():
    line = _call("kek_generate", "--id", "k9").strip()
    assert crypto.keyring_parse(line).primary.id == "k9"
    with pytest.raises(CommandError):
        _call("kek_generate", "--id", "bad id")


def test_kek_rewrap_and_dek_rotate_commands(alice, bob, settings):
    views = [_conversation(alice.tenant), _conversation(bob.tenant)]
    settings.FAIRWAY_KEKS = crypto.kek_generate_line("t2") + "," + settings.FAIRWAY_KEKS
    out = _call("kek_rewrap")
    assert "re-wrapped 2 data key(s) from KEK t1 to t2" in out and "t1 wrap nothing" in out
    settings.FAIRWAY_KEKS = settings.FAIRWAY_KEKS.split(",")[0]
    keystore.cache_evict()
    out = _call("dek_rotate", "--tenant", "alice", "--batch-size", "1", "--settle", "0")
    assert "alice: now DEK v2; re-encrypted 1 conversation(s), 1 message(s); destroyed versions [1]" in out
    out = _call("dek_rotate", "--all", "--settle", "0")
    assert "alice: now DEK v3" in out and "bob: now DEK v2" in out
    keystore.cache_evict()
    for party, view in zip((alice, bob), views):
        assert selectors.message_list(tenant_id=party.tenant.pk, conversation_id=view.id).items[0].content == MARKER
    assert MARKER not in out


def test_tenant_shred_command(alice, bob):
    _conversation(alice.tenant), _conversation(bob.tenant)
    with pytest.raises(CommandError, match="--yes"):
        _call("tenant_shred", "alice")
    out = _call("tenant_shred", "bob", "--yes", "--keep-tenant")
    assert "1 data key(s) destroyed" in out and Tenant.objects.filter(slug="bob").exists()
    out = _call("tenant_shred", "alice", "--yes")
    assert "tenant deleted" in out and not Tenant.objects.filter(slug="alice").exists()
    assert not Message.objects.exists() and not DataKey.objects.exists()

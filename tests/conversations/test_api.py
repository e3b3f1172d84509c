"""The REST API: CRUD, pagination, tenant isolation (BOLA) for every verb, and bad input."""

from __future__ import annotations

import uuid

import pytest

from .conftest import MARKER, _party

BASE = "/v1/conversations"


def create(party, **body):
    response = party.client.post(BASE, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def append(party, conversation_id, *messages):
    body = {"messages": [{"role": r, "content": c} for r, c in messages]}
    return party.client.post(f"{BASE}/{conversation_id}/messages", body, format="json")


def error(response, status, code=None):
    assert response.status_code == status, response.content
    body = response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    if code:
        assert body["code"] == code, body
    assert MARKER not in response.content.decode()
    return body


def test_create_get_patch_delete(alice):
    made = create(alice, title="Trip", metadata={"lang": "en"}, system_prompt="Be brief.")
    assert made["object"] == "conversation" and uuid.UUID(made["id"])
    assert (made["title"], made["metadata"], made["system_prompt"], made["message_count"]) == \
        ("Trip", {"lang": "en"}, "Be brief.", 0)
    url = f"{BASE}/{made['id']}"
    assert alice.client.get(url).json() == made
    patched = alice.client.patch(url, {"title": "Trip 2", "system_prompt": None}, format="json").json()
    assert (patched["title"], patched["metadata"], patched["system_prompt"]) == ("Trip 2", {"lang": "en"}, None)
    assert alice.client.delete(url).json() == {"id": made["id"], "object": "conversation.deleted", "deleted": True}
    error(alice.client.get(url), 404, "conversation_not_found")
    empty = create(alice)
    assert (empty["title"], empty["metadata"], empty["system_prompt"]) == (None, {}, None)


def test_messages_append_and_paginate(alice):
    conv = create(alice)["id"]
    one = alice.client.post(f"{BASE}/{conv}/messages", {"role": "user", "content": "first"}, format="json")
    assert one.status_code == 201 and one.json()["object"] == "conversation.message"
    assert one.json()["role"] == "user" and one.json()["content"] == "first"
    batch = append(alice, conv, *[("assistant" if i % 2 else "user", f"m{i}") for i in range(1, 6)])
    assert batch.status_code == 201 and [m["content"] for m in batch.json()["data"]] == [f"m{i}" for i in range(1, 6)]
    page = alice.client.get(f"{BASE}/{conv}/messages?limit=4").json()
    assert [m["content"] for m in page["data"]] == ["first", "m1", "m2", "m3"] and page["has_more"] is True
    rest = alice.client.get(f"{BASE}/{conv}/messages?limit=4&after={page['last_id']}").json()
    assert [m["content"] for m in rest["data"]] == ["m4", "m5"] and rest["has_more"] is False
    newest = alice.client.get(f"{BASE}/{conv}/messages?limit=2&order=desc").json()
    assert [m["content"] for m in newest["data"]] == ["m5", "m4"]
    assert alice.client.get(f"{BASE}/{conv}").json()["message_count"] == 6


def test_list_is_newest_first_paginated_and_isolated(alice, bob):
    mine = [create(alice, title=f"c{i}")["id"] for i in range(5)]
    create(bob, title="bob's")
    first = alice.client.get(f"{BASE}?limit=2").json()
    assert first["object"] == "list" and [c["id"] for c in first["data"]] == mine[::-1][:2] and first["has_more"]
    second = alice.client.get(f"{BASE}?limit=2&after={first['last_id']}").json()
    third = alice.client.get(f"{BASE}?limit=2&after={second['last_id']}").json()
    assert [c["id"] for c in second["data"] + third["data"]] == mine[::-1][2:]
    assert third["has_more"] is False
    assert [c["title"] for c in bob.client.get(BASE).json()["data"]] == ["bob's"]


def test_bola_every_endpoint_answers_404_for_another_tenants_objects(alice, bob):
    theirs = create(bob, title=f"secret {MARKER}")["id"]
    append(bob, theirs, ("user", f"hi {MARKER}"))
    their_message = bob.client.get(f"{BASE}/{theirs}/messages").json()["data"][0]["id"]
    unknown = str(uuid.uuid4())
    for target in (theirs, unknown):  # foreign and nonexistent read the same
        url = f"{BASE}/{target}"
        responses = [alice.client.get(url), alice.client.patch(url, {"title": "x"}, format="json"),
                     alice.client.delete(url), alice.client.get(f"{url}/messages"),
                     alice.client.post(f"{url}/messages", {"role": "user", "content": "x"}, format="json")]
        bodies = [error(r, 404, "conversation_not_found") for r in responses]
        assert all(b["message"] == f"No conversation found with id '{target}'." for b in bodies)
    mine = create(alice)["id"]
    error(alice.client.get(f"{BASE}/{mine}/messages?after={their_message}"), 400, "invalid_cursor")
    error(alice.client.get(f"{BASE}?after={theirs}"), 400, "invalid_cursor")
    # Nothing of bob's changed.
    view = bob.client.get(f"{BASE}/{theirs}").json()
    assert view["title"] == f"secret {MARKER}" and view["message_count"] == 1
    assert [c["id"] for c in alice.client.get(BASE).json()["data"]] == [mine]


@pytest.mark.parametrize("path", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
def test_malformed_ids_are_400(alice, path):
    for response in (alice.client.get(f"{BASE}/{path}"), alice.client.get(f"{BASE}/{path}/messages"),
                     alice.client.delete(f"{BASE}/{path}")):
        assert error(response, 400, "invalid_id")["param"] == "conversation_id"
    error(alice.client.get(f"{BASE}?after={path}"), 400)


def test_bad_messages_are_refused_without_echoing_content(alice, settings):
    settings.FAIRWAY_CONVERSATION_MAX_MESSAGE_CHARS = 100
    conv = create(alice)["id"]
    url = f"{BASE}/{conv}/messages"
    cases = [({"role": "user", "content": ""}, "content"), ({"role": "user", "content": "   "}, "content"),
             ({"role": "user", "content": MARKER * 10}, "content"), ({"role": "system", "content": MARKER}, "role"),
             ({"role": "tool", "content": MARKER}, "role"), ({"role": "user"}, "content"),
             ({"role": "user", "content": ["parts"]}, "content"), ({"messages": []}, "messages"),
             ({"role": "user", "content": "x", "name": MARKER}, "name"),
             ({"messages": [{"role": "user", "content": "ok"}, {"role": "bot", "content": MARKER}]}, "messages.1.role")]
    for body, param in cases:
        assert error(alice.client.post(url, body, format="json"), 400)["param"] == param, body
    too_long = error(alice.client.post(url, {"role": "user", "content": "x" * 101}, format="json"), 400)
    assert too_long["code"] == "string_above_max_length" and "100" in too_long["message"]
    assert alice.client.get(f"{BASE}/{conv}").json()["message_count"] == 0  # nothing partial stored


def test_bad_conversation_fields(alice):
    for body, param in [({"title": "x" * 257}, "title"), ({"metadata": {"k": 1}}, "metadata"),
                        ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
                        ({"system_prompt": ""}, "system_prompt"), ({"titel": "typo"}, "titel")]:
        assert error(alice.client.post(BASE, body, format="json"), 400)["param"] == param
    error(alice.client.post(BASE, "[1]", content_type="application/json"), 400)
    error(alice.client.post(BASE, "{nope", content_type="application/json"), 400, "invalid_json")
    error(alice.client.get(f"{BASE}?limit=0"), 400)
    error(alice.client.get(f"{BASE}?limit=101"), 400)


def test_authentication_and_scope(alice, plan):
    from rest_framework.test import APIClient

    response = APIClient().get(BASE)
    assert error(response, 401, "invalid_api_key") and response["WWW-Authenticate"].startswith("Bearer")
    inference_only = _party("carol", plan, scopes=["inference"])
    error(inference_only.client.get(BASE), 403, "insufficient_scope")
    error(inference_only.client.post(BASE, {}, format="json"), 403, "insufficient_scope")


def test_undecryptable_rows_answer_500_without_details(alice):
    from conversations.models import Message

    conv = create(alice, title=MARKER)["id"]
    append(alice, conv, ("user", MARKER), ("assistant", "b"))
    first, second = Message.objects.filter(conversation_id=conv).order_by("seq")
    Message.objects.filter(pk=second.pk).update(body_ct=first.body_ct)
    body = error(alice.client.get(f"{BASE}/{conv}/messages"), 500, "decryption_failed")
    assert body["message"] == "Stored conversation data could not be decrypted." and body["type"] == "server_error"

"""POST /v1/chat/completions with `conversation`, through the real gateway against the FAKE upstream.

The FAKE service records what it was sent, so these tests assert exactly which messages were forwarded.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest

from gateway.tokens import PromptCounter
from tests.support.fake_inference import MODEL, tokenizer_payload

from .conftest import MARKER

REPLY = f"Hello {MARKER}!"


def post(url, party, path, body, **kwargs):
    return httpx.post(url + path, json=body, headers={"Authorization": f"Bearer {party.key}"}, timeout=20, **kwargs)


def new_conversation(url, party, **body) -> str:
    response = post(url, party, "/v1/conversations", body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def chat(url, party, conversation, content, **extra):
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "conversation": conversation,
            **extra}
    return post(url, party, "/v1/chat/completions", body)


def stored(url, party, conversation) -> list[tuple[str, str]]:
    response = httpx.get(f"{url}/v1/conversations/{conversation}/messages?limit=100",
                         headers={"Authorization": f"Bearer {party.key}"})
    return [(m["role"], m["content"]) for m in response.json()["data"]]


def forwarded(fake, index=-1) -> list[dict]:
    return fake.requests[index]["body"]["messages"]


def sse_text(text: str) -> str:
    chunks = [json.loads(e[6:]) for e in text.split("\n\n") if e.startswith("data: {")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


def test_turns_forward_history_and_store_the_reply(gateway_url, fake_upstream, alice, caplog):
    conv = new_conversation(gateway_url, alice, system_prompt=f"Be brief. {MARKER}", title=MARKER)
    first = chat(gateway_url, alice, conv, f"Hi {MARKER}", max_tokens=16)
    assert first.status_code == 200, first.text
    assert first.json()["choices"][0]["message"]["content"] == REPLY
    assert forwarded(fake_upstream) == [{"role": "system", "content": f"Be brief. {MARKER}"},
                                        {"role": "user", "content": f"Hi {MARKER}"}]
    second = chat(gateway_url, alice, conv, "And then?", max_tokens=16, stream=True)
    assert second.status_code == 200 and sse_text(second.text) == REPLY
    assert forwarded(fake_upstream) == [{"role": "system", "content": f"Be brief. {MARKER}"},
                                        {"role": "user", "content": f"Hi {MARKER}"},
                                        {"role": "assistant", "content": REPLY},
                                        {"role": "user", "content": "And then?"}]
    assert stored(gateway_url, alice, conv) == [("user", f"Hi {MARKER}"), ("assistant", REPLY),
                                                ("user", "And then?"), ("assistant", REPLY)]
    assert MARKER not in caplog.text  # logs carry ids and counts, never content


def test_long_history_is_truncated_keeping_the_system_prompt(gateway_url, fake_upstream, alice):
    counter = PromptCounter.from_payload(tokenizer_payload(512))
    conv = new_conversation(gateway_url, alice, system_prompt="You are a terse assistant.")
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i:02d} " + "lorem ipsum " * 3}
               for i in range(60)]
    assert post(gateway_url, alice, f"/v1/conversations/{conv}/messages", {"messages": history}).status_code == 201
    for max_tokens, budget in ((64, 512 - 64), (None, 512 - 256)):  # no max_tokens: the reply reserve (256)
        extra = {"max_tokens": max_tokens} if max_tokens else {}
        everything = [{"role": r, "content": c} for r, c in stored(gateway_url, alice, conv)]
        assert chat(gateway_url, alice, conv, "Newest question?", **extra).status_code == 200
        sent = forwarded(fake_upstream)
        assert sent[0] == {"role": "system", "content": "You are a terse assistant."}
        assert sent[-1] == {"role": "user", "content": "Newest question?"}
        kept = sent[1:-1]
        assert kept == everything[len(everything) - len(kept):]  # a contiguous newest suffix
        assert kept[0]["role"] == "user" and 4 <= len(kept) < len(everything)
        assert counter.chat_tokens(sent) <= budget  # never more than fits, room left for the reply
        one_more_turn = [sent[0], *everything[len(everything) - len(kept) - 2:], sent[-1]]
        assert counter.chat_tokens(one_more_turn) > budget  # and as much as fits (whole turns)


def test_system_prompt_and_new_message_too_long_is_400_and_frees_the_lock(gateway_url, fake_upstream, alice):
    conv = new_conversation(gateway_url, alice, system_prompt="x" * 300)
    response = chat(gateway_url, alice, conv, "y" * 200, max_tokens=64)
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
    assert not fake_upstream.requests
    assert chat(gateway_url, alice, conv, "short", max_tokens=64).status_code == 200
    assert stored(gateway_url, alice, conv) == [("user", "short"), ("assistant", REPLY)]


def test_failed_stream_stores_only_what_was_delivered(gateway_url, fake_upstream, alice):
    conv = new_conversation(gateway_url, alice)
    fake_upstream.script.fail_after = 2
    streamed = chat(gateway_url, alice, conv, "one", stream=True, max_tokens=16)
    assert '"engine_error"' in streamed.text and sse_text(streamed.text) == "Hello "
    assert stored(gateway_url, alice, conv) == [("user", "one"), ("assistant", "Hello ")]
    whole = chat(gateway_url, alice, conv, "two", max_tokens=16)  # non-streaming: nothing was delivered
    assert whole.status_code == 502
    fake_upstream.script.fail_after = None
    fake_upstream.script.reject = (429, {"error": {"message": "queue full", "type": "rate_limit_error",
                                                   "code": "queue_full", "param": None}})
    assert chat(gateway_url, alice, conv, "three", max_tokens=16).status_code == 429
    fake_upstream.script.reject = None
    assert chat(gateway_url, alice, conv, "four", max_tokens=16).status_code == 200  # lock was released
    assert stored(gateway_url, alice, conv) == [("user", "one"), ("assistant", "Hello "), ("user", "four"),
                                                ("assistant", REPLY)]


def test_client_disconnect_stores_the_delivered_part(gateway_url, fake_upstream, alice):
    conv = new_conversation(gateway_url, alice)
    fake_upstream.script.token_delay = 0.3
    body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "conversation": conv, "stream": True}
    with httpx.stream("POST", gateway_url + "/v1/chat/completions", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {alice.key}"}) as response:
        for line in response.iter_lines():
            if '"Hello"' in line:
                break
    assert fake_upstream.disconnected.wait(5)
    deadline = time.monotonic() + 5
    while len(stored(gateway_url, alice, conv)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    (user, reply) = stored(gateway_url, alice, conv)
    assert user == ("user", "go") and reply[0] == "assistant" and REPLY.startswith(reply[1]) and reply[1] != REPLY


def test_concurrent_turns_on_one_conversation_never_interleave(gateway_url, fake_upstream, alice):
    conv = new_conversation(gateway_url, alice)
    fake_upstream.script.token_delay = 0.05
    barrier, results = threading.Barrier(4), []

    def turn(i):
        barrier.wait()
        response = chat(gateway_url, alice, conv, f"q{i}", max_tokens=16, stream=bool(i % 2))
        results.append((i, response.status_code, response))

    threads = [threading.Thread(target=turn, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    append = post(gateway_url, alice, f"/v1/conversations/{conv}/messages", {"role": "user", "content": "x"})
    for thread in threads:
        thread.join()
    statuses = sorted(status for _, status, _ in results)
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 409}
    for _, status, response in results:
        if status == 409:
            error = response.json()["error"]
            assert error["code"] == "conversation_busy" and response.headers["retry-after"] == "1"
    winners = sorted(f"q{i}" for i, status, _ in results if status == 200)
    messages = stored(gateway_url, alice, conv)
    turns = [m for m in messages if m != ("user", "x")]
    assert len(turns) == 2 * len(winners)
    assert all(turns[k][0] == "user" and turns[k + 1] == ("assistant", REPLY) for k in range(0, len(turns), 2))
    assert sorted(turns[k][1] for k in range(0, len(turns), 2)) == winners
    assert append.status_code in (201, 409)  # refused while a turn held the lock, or it slipped in between turns
    if append.status_code == 409:
        assert ("user", "x") not in messages


def test_sequential_turns_after_a_busy_refusal(gateway_url, fake_upstream, alice):
    conv = new_conversation(gateway_url, alice)
    fake_upstream.script.token_delay = 0.2
    holder = threading.Thread(target=chat, args=(gateway_url, alice, conv, "slow"), kwargs={"max_tokens": 16})
    holder.start()
    deadline = time.monotonic() + 5
    while not fake_upstream.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    busy = chat(gateway_url, alice, conv, "second", max_tokens=16)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "conversation_busy"
    holder.join()
    fake_upstream.script.token_delay = 0
    assert chat(gateway_url, alice, conv, "third", max_tokens=16).status_code == 200
    assert [c for _, c in stored(gateway_url, alice, conv)] == ["slow", REPLY, "third", REPLY]


def test_bad_conversation_requests(gateway_url, fake_upstream, alice, bob, plan, settings):
    settings.FAIRWAY_CONVERSATION_MAX_MESSAGE_CHARS = 50
    mine, theirs = new_conversation(gateway_url, alice), new_conversation(gateway_url, bob)
    cases = [
        (chat(gateway_url, alice, str(uuid.uuid4()), "hi"), 404, "conversation_not_found", "conversation"),
        (chat(gateway_url, alice, theirs, "hi"), 404, "conversation_not_found", "conversation"),
        (chat(gateway_url, alice, "not-a-uuid", "hi"), 400, "invalid_id", "conversation"),
        (chat(gateway_url, alice, 12345, "hi"), 400, "invalid_id", "conversation"),
        (chat(gateway_url, alice, mine, ""), 400, "empty_string", "messages[0].content"),
        (chat(gateway_url, alice, mine, MARKER * 3), 400, "string_above_max_length", "messages[0].content"),
        (post(gateway_url, alice, "/v1/chat/completions", {
            "model": MODEL, "conversation": mine, "messages": [{"role": "system", "content": MARKER},
                                                               {"role": "user", "content": "hi"}]}),
         400, "invalid_role", "messages[0].role"),
        (post(gateway_url, alice, "/v1/chat/completions", {
            "model": MODEL, "conversation": mine, "messages": [{"role": "user", "content": "hi"},
                                                               {"role": "assistant", "content": MARKER}]}),
         400, "invalid_role", "messages[1].role"),
        (post(gateway_url, alice, "/v1/chat/completions", {
            "model": MODEL, "conversation": mine, "messages": [{"role": "tool", "content": MARKER}]}),
         400, None, "messages[0].role"),
        (post(gateway_url, alice, "/v1/completions", {"model": MODEL, "prompt": "hi", "conversation": mine}),
         400, None, "conversation"),
    ]
    for response, status, code, param in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert (error["param"], code in (None, error["code"])) == (param, True), error
        assert MARKER not in response.text
    assert not fake_upstream.requests
    from .conftest import _party
    inference_only = _party("carol", plan, scopes=["inference"])
    refused = chat(gateway_url, inference_only, mine, "hi")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"
    assert stored(gateway_url, alice, mine) == [] and stored(gateway_url, bob, theirs) == []
    assert chat(gateway_url, alice, mine, "fine").status_code == 200  # no lock left behind by any refusal


@pytest.mark.parametrize("stream", [False, True])
def test_requests_without_conversation_are_unchanged(gateway_url, fake_upstream, alice, stream):
    body = {"model": MODEL, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
            "stream": stream}
    assert post(gateway_url, alice, "/v1/chat/completions", body).status_code == 200
    assert forwarded(fake_upstream) == body["messages"]


def test_undecryptable_history_is_500_and_releases_the_lock(gateway_url, fake_upstream, alice):
    from conversations.models import Message

    conv = new_conversation(gateway_url, alice)
    assert chat(gateway_url, alice, conv, "one").status_code == 200
    first, second = Message.objects.filter(conversation_id=conv).order_by("seq")
    original = second.body_ct
    Message.objects.filter(pk=second.pk).update(body_ct=first.body_ct)
    response = chat(gateway_url, alice, conv, "two")
    assert response.status_code == 500 and response.json()["error"]["code"] == "decryption_failed"
    assert len(fake_upstream.requests) == 1  # nothing forwarded
    Message.objects.filter(pk=second.pk).update(body_ct=original)
    assert chat(gateway_url, alice, conv, "three").status_code == 200  # the lock was released


def test_streamed_turn_is_stored_and_unlocked_before_done(gateway_url, fake_upstream, alice, monkeypatch):
    """A client that sends its next turn the moment it reads [DONE] must never get 409."""
    from conversations import services

    append = services.message_append

    def slow_append(**kwargs):  # widen the race: storing the turn takes a while
        time.sleep(0.5)
        return append(**kwargs)

    monkeypatch.setattr(services, "message_append", slow_append)
    conv = new_conversation(gateway_url, alice)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "first"}], "conversation": conv,
            "stream": True, "max_tokens": 16}
    with httpx.stream("POST", gateway_url + "/v1/chat/completions", json=body, timeout=20,
                      headers={"Authorization": f"Bearer {alice.key}"}) as response:
        for line in response.iter_lines():
            if line == "data: [DONE]":
                # Still inside the first response: the turn is already stored and the lock free.
                assert [c for _, c in stored(gateway_url, alice, conv)] == ["first", REPLY]
                assert chat(gateway_url, alice, conv, "second", max_tokens=16).status_code == 200
                break
        else:
            raise AssertionError("stream ended without [DONE]")

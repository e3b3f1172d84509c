"""Chat over a WebSocket (/v1/realtime/chat) against the real gateway under uvicorn and the FAKE
inference service: the HTTP API's auth, validation, limits, metering and errors; closing the socket
cancels the generation."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.billing_fixtures import *  # noqa: F401,F403 (fake_llm, gateway, make_key, wait_for)
from tests.support.billing_fixtures import HI, MODEL, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("executor_db_released")]
BODY = {"model": MODEL, "messages": HI, "max_tokens": 8}


def _socket(gateway: str, key: str | None = None, query: str = ""):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return connect(f"{gateway.replace('http://', 'ws://')}/v1/realtime/chat{query}", additional_headers=headers,
                   open_timeout=5)


def _recv(ws, timeout: float = 5.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def _until(ws, kind: str) -> tuple[dict, list[dict]]:
    seen = []
    while True:
        message = _recv(ws)
        seen.append(message)
        if message["type"] == kind:
            return message, seen


def _record(request_id: str):
    from billing.models import UsageRecord

    return wait_for(lambda: UsageRecord.objects.filter(request_id=request_id, finalised_at__isnull=False).first())


def test_streams_a_chat_completion_and_meters_it(gateway, make_key):
    key = make_key().plaintext
    with _socket(gateway, key) as ws:
        assert _recv(ws) == {"type": "session.created"}
        ws.send(json.dumps({"type": "chat.completions", "id": "c1", "body": BODY}))
        created = _recv(ws)
        assert created["type"] == "response.created" and created["id"] == "c1"
        assert created["headers"]["x-ratelimit-limit-requests"] == "1000"
        done, seen = _until(ws, "response.done")
    chunks = [m["data"] for m in seen if m["type"] == "chunk"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello, world!" and chunks[0]["object"] == "chat.completion.chunk"
    record = _record(created["request_id"])
    assert record.status == "ok" and record.completion_tokens == 4 and record.endpoint == "chat.completions"


def test_auth_message_then_non_streaming_request(gateway, make_key):
    key = make_key().plaintext
    with _socket(gateway) as ws:
        ws.send(json.dumps({"type": "auth", "api_key": key}))
        assert _recv(ws)["type"] == "session.created"
        ws.send(json.dumps({"type": "chat.completions", "body": {**BODY, "stream": False}}))
        response, _ = _until(ws, "response")
    assert response["data"]["object"] == "chat.completion"
    assert response["data"]["choices"][0]["message"]["content"] == "Hello, world!"


@pytest.mark.parametrize("case", ["bad-key", "query-key", "before-auth"])
def test_unauthenticated_sockets_get_the_http_error_and_are_closed(gateway, make_key, case):
    key = make_key().plaintext
    if case == "bad-key":
        ws = _socket(gateway, key[:-1] + ("A" if key[-1] != "A" else "B"))
    elif case == "query-key":
        ws = _socket(gateway, key, query=f"?api_key={key}")
    else:
        ws = _socket(gateway)
    with ws:
        if case == "before-auth":
            ws.send(json.dumps({"type": "chat.completions", "body": BODY}))
        error = _recv(ws)
        assert error["type"] == "error" and error["status"] == 401 and error["error"]["code"] == "invalid_api_key"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 4401


def test_no_key_in_time_closes_the_socket(gateway, monkeypatch):
    from gateway import realtime

    monkeypatch.setattr(realtime, "AUTH_TIMEOUT_S", 0.2)
    with _socket(gateway) as ws:
        assert _recv(ws)["status"] == 401
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


def test_validation_errors_match_the_http_api(gateway, make_key):
    key = make_key().plaintext
    bad = {**BODY, "n": 2}
    http = httpx.post(f"{gateway}/v1/chat/completions", json=bad, headers={"Authorization": f"Bearer {key}"})
    with _socket(gateway, key) as ws:
        _recv(ws)
        ws.send(json.dumps({"type": "chat.completions", "body": bad}))
        error = _recv(ws)
        ws.send("not json")
        assert _recv(ws)["error"]["code"] == "invalid_message"
    assert error["type"] == "error" and error["status"] == http.status_code == 400
    assert error["error"] == http.json()["error"]


def test_rate_limits_and_revocation_apply_per_request(gateway, make_key, clock):
    # The fake clock keeps the one-minute RPM window from ending between the first two requests.
    from tenants import services

    issued = make_key(rpm=1)
    with _socket(gateway, issued.plaintext) as ws:
        _recv(ws)
        ws.send(json.dumps({"type": "chat.completions", "body": BODY}))
        _until(ws, "response.done")
        ws.send(json.dumps({"type": "chat.completions", "body": BODY}))
        limited = _recv(ws)
        assert limited["status"] == 429 and limited["error"]["code"] == "rate_limit_exceeded"
        assert "retry-after" in limited["headers"]
        services.apikey_revoke(api_key=issued.api_key)
        ws.send(json.dumps({"type": "chat.completions", "body": BODY}))
        assert _recv(ws)["error"]["message"] == "This API key has been revoked."


def test_suspended_tenant_is_refused_with_403(gateway, make_key):
    from tenants import services

    issued = make_key()
    services.tenant_suspend(tenant=issued.api_key.tenant)
    with _socket(gateway, issued.plaintext) as ws:
        error = _recv(ws)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert error["status"] == 403 and error["error"]["code"] == "tenant_suspended" and closed.value.rcvd.code == 4403


def _slow(fake_llm) -> None:
    fake_llm.script.tokens = [" tok"] * 100
    fake_llm.script.token_delay = 0.05


def test_closing_the_socket_cancels_the_generation(gateway, fake_llm, make_key):
    _slow(fake_llm)
    with _socket(gateway, make_key().plaintext) as ws:
        _recv(ws)
        ws.send(json.dumps({"type": "chat.completions", "body": {**BODY, "max_tokens": 100}}))
        created = _recv(ws)
        _until(ws, "chunk")
        _until(ws, "chunk")
    assert fake_llm.disconnected.wait(5), "the upstream generation was not cancelled"
    record = _record(created["request_id"])
    assert record.status == "cancelled" and 0 < record.completion_tokens < 100


def test_cancel_message_stops_one_request_and_keeps_the_socket(gateway, fake_llm, make_key):
    _slow(fake_llm)
    with _socket(gateway, make_key().plaintext) as ws:
        _recv(ws)
        ws.send(json.dumps({"type": "chat.completions", "body": {**BODY, "max_tokens": 100}}))
        created = _recv(ws)
        _until(ws, "chunk")
        ws.send(json.dumps({"type": "cancel", "request_id": created["request_id"]}))
        cancelled, _ = _until(ws, "response.cancelled")
        assert cancelled["request_id"] == created["request_id"]
        assert fake_llm.disconnected.wait(5)
        fake_llm.script.tokens, fake_llm.script.token_delay = ["ok"], 0
        ws.send(json.dumps({"type": "chat.completions", "body": BODY}))
        _until(ws, "response.done")

"""The OpenAI front door over real sockets, against a FAKE upstream (scripted tokens)."""

import json

import httpx
import openai
import pytest

from tests.support.fake_inference import MODEL

pytestmark = pytest.mark.django_db(transaction=True)


def post(gateway_url, key, path="/v1/chat/completions", body=None, **kwargs):
    body = body if body is not None else {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return httpx.post(gateway_url + path, json=body, headers=headers, timeout=10, **kwargs)


def sse_payloads(text: str) -> list:
    assert text.endswith("\n\n")
    events = text.split("\n\n")[:-1]
    assert all(event.startswith("data: ") for event in events), events
    return [event[6:] for event in events]


def test_chat_completion_whole(gateway_url, fake_upstream, tenant_key):
    response = post(gateway_url, tenant_key.plaintext, body={"model": MODEL, "max_tokens": 20, "temperature": 0,
                                                             "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello, world!", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
    forwarded = fake_upstream.requests[-1]
    tenant = tenant_key.api_key.tenant
    assert forwarded["headers"]["x-fairway-tenant"] == str(tenant.id)
    assert float(forwarded["headers"]["x-fairway-weight"]) == 2.0
    assert forwarded["headers"]["x-request-id"] == response.headers["x-request-id"]
    assert forwarded["body"]["stream"] is True and forwarded["body"]["max_tokens"] == 20
    assert forwarded["body"]["fairway_clamp_max_tokens"] is False


def test_chat_stream_framing_and_usage(gateway_url, fake_upstream, tenant_key):
    body = {"model": MODEL, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}]}
    response = post(gateway_url, tenant_key.plaintext, body=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Hello, world!"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert len({c["id"] for c in chunks}) == 1


def test_completions_whole_and_stream(gateway_url, fake_upstream, tenant_key):
    body = {"model": MODEL, "prompt": "Once upon"}
    whole = post(gateway_url, tenant_key.plaintext, "/v1/completions", body).json()
    assert whole["object"] == "text_completion" and whole["choices"][0]["text"] == "Hello, world!"
    assert fake_upstream.requests[-1]["body"]["fairway_clamp_max_tokens"] is True
    streamed = post(gateway_url, tenant_key.plaintext, "/v1/completions", {**body, "stream": True})
    chunks = [json.loads(p) for p in sse_payloads(streamed.text)[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "Hello, world!"


def test_openai_client_works_unmodified(gateway_url, fake_upstream, tenant_key):
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=tenant_key.plaintext, max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL]
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hello, world!" and reply.usage.total_tokens == 11
    parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True) if c.choices]
    assert "".join(parts) == "Hello, world!"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway_url + "/v1", api_key="fw_bad", max_retries=0).models.list()


def test_upstream_down_is_503_with_retry_after(gateway_url, settings, tenant_key):
    from gateway import upstream
    from tests.support.servers import free_port

    upstream.reset()
    settings.FAIRWAY_INFERENCE_URL = f"http://127.0.0.1:{free_port()}"
    response = post(gateway_url, tenant_key.plaintext)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) >= 1 and response.headers["x-request-id"]


@pytest.mark.parametrize("status, code", [(400, "context_length_exceeded"), (429, "rate_limit_exceeded"),
                                          (503, "overloaded")])
def test_upstream_refusals_are_relayed(gateway_url, fake_upstream, tenant_key, status, code):
    fake_upstream.script.reject = (status, {"error": {"message": "no", "type": "x", "param": None, "code": code}})
    for stream in (False, True):
        response = post(gateway_url, tenant_key.plaintext,
                        body={"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == status and response.json()["error"]["code"] == code
        if status != 400:
            assert response.headers["Retry-After"] == "3"


def test_error_after_stream_started_is_a_final_event(gateway_url, fake_upstream, tenant_key):
    fake_upstream.script.fail_after = 2
    response = post(gateway_url, tenant_key.plaintext,
                    body={"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    payloads = sse_payloads(response.text)
    assert "[DONE]" not in payloads
    assert json.loads(payloads[-1])["error"]["code"] == "engine_error"
    contents = [json.loads(p)["choices"][0]["delta"].get("content") for p in payloads[:-1]]
    assert "".join(c or "" for c in contents) == "Hello,"


def test_client_disconnect_cancels_upstream(gateway_url, fake_upstream, tenant_key):
    fake_upstream.script.tokens = ["tok"] * 200
    fake_upstream.script.token_delay = 0.05
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", gateway_url + "/v1/chat/completions", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {tenant_key.plaintext}"}) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
    assert fake_upstream.disconnected.wait(5), "upstream generation was not cancelled"
    assert fake_upstream.completed == 0


@pytest.mark.parametrize("send, status, code", [
    (dict(content=b"{not json"), 400, "invalid_json"),
    (dict(content=b"x" * (1024 * 1024 + 10)), 413, "request_too_large"),
    (dict(json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]}), 404, "model_not_found"),
    (dict(json={"model": MODEL, "messages": [], "temperature": 9}), 400, None),
])
def test_bad_requests(gateway_url, fake_upstream, tenant_key, send, status, code):
    response = httpx.post(gateway_url + "/v1/chat/completions", timeout=10,
                          headers={"Authorization": f"Bearer {tenant_key.plaintext}",
                                   "Content-Type": "application/json"}, **send)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code:
        assert error["code"] == code
    assert response.headers["x-request-id"]
    assert fake_upstream.requests == []


def test_method_and_auth_errors_keep_the_shape(gateway_url, fake_upstream, tenant_key):
    assert httpx.get(gateway_url + "/v1/chat/completions").status_code == 405
    response = httpx.post(gateway_url + "/v1/chat/completions", json={})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_a_plan_restricted_to_other_models_sees_and_uses_none_of_this_one(gateway_url, fake_upstream):
    from tenants import services

    def key_on(plan_name, allowed):
        plan = services.plan_create(name=plan_name, allowed_models=allowed)
        tenant = services.tenant_create(name=plan_name, slug=plan_name, plan=plan)
        return services.apikey_create(tenant=tenant, name="k").plaintext

    restricted, allowed = key_on("restricted", ["some-other-model"]), key_on("allowed", [MODEL])
    client = openai.OpenAI(api_key=restricted, base_url=gateway_url + "/v1", max_retries=0)
    assert [m.id for m in client.models.list()] == []
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert info.value.code == "model_not_found"
    assert httpx.get(f"{gateway_url}/v1/models/{MODEL}", headers={"Authorization": f"Bearer {restricted}"}
                     ).status_code == 404
    # Nothing ran and nothing was billed for the refused request.
    assert fake_upstream.requests == []
    permitted = openai.OpenAI(api_key=allowed, base_url=gateway_url + "/v1", max_retries=0)
    assert [m.id for m in permitted.models.list()] == [MODEL]
    assert permitted.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=5).choices[0].message.content


@pytest.mark.parametrize("stream", [True, False])
def test_text_with_unicode_line_separators_arrives_intact(gateway_url, fake_upstream, tenant_key, stream):
    # U+2028/U+2029/U+0085 are not line ends in SSE, but some line readers split there; a model can
    # emit them. The FAKE upstream sends them raw (valid SSE); the gateway must not cut the event.
    fake_upstream.script.tokens = ["a\u2028b", " c\x85d", " e\u2029f", "\r\n!"]
    client = openai.OpenAI(api_key=tenant_key.plaintext, base_url=gateway_url + "/v1", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    if stream:
        chunks = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10).choices[0].message.content
    assert text == "a\u2028b c\x85d e\u2029f\r\n!"

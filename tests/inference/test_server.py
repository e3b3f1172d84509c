"""The inference service's internal HTTP app, in-process on the real engine with a tiny random Llama."""

import json
import time

import httpx
import pytest

from inference.engine.engine import Engine, EngineConfig
from inference.metrics import EngineMetrics
from inference.server import InferenceApp, ServiceState
from inference.tokenization import PromptBuilder
from tests.support.servers import serve_in_thread
from tests.support.tiny_model import build_tiny_model

TOKEN = "internal-test-token"
MODEL = "tiny"
CONTEXT = 512


@pytest.fixture(scope="module")
def service():
    model, tokenizer = build_tiny_model()
    engine = Engine(model, tokenizer, EngineConfig(device="cpu", max_queue_per_tenant=4))
    engine.start()
    state = ServiceState(engine=engine, prompt_builder=PromptBuilder(tokenizer), model_name=MODEL,
                         context_length=CONTEXT, device="cpu", token=TOKEN, metrics=EngineMetrics(MODEL))
    with serve_in_thread(InferenceApp(state)) as url:
        yield url, engine
    engine.shutdown()


def call(url, path, body=None, token=TOKEN, headers=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}", "x-fairway-tenant": "t1", "x-fairway-weight": "1",
               **(headers or {})}
    if body is None:
        return httpx.get(url + path, headers=headers, timeout=30)
    return httpx.post(url + path, json=body, headers=headers, timeout=30, **kwargs)


def chat(**changes):
    return {"model": MODEL, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 8,
            "temperature": 0, **changes}


def test_every_route_requires_the_internal_token(service):
    url, _ = service
    for path in ("/health", "/metrics", "/v1/models", "/v1/tokenizer"):
        assert call(url, path, token="wrong").status_code == 401
    assert call(url, "/v1/chat/completions", chat(), token="not-it").status_code == 401


def test_health_models_tokenizer_metrics(service):
    url, _ = service
    health = call(url, "/health").json()
    assert health["model"] == MODEL and health["device"] == "cpu" and "engine" in health
    assert call(url, "/v1/models").json()["data"][0]["id"] == MODEL
    tokenizer = call(url, "/v1/tokenizer").json()
    assert tokenizer["context_length"] == CONTEXT and "im_start" in tokenizer["chat_template"]
    call(url, "/v1/chat/completions", chat())
    metrics = call(url, "/metrics").text
    assert "fairway_time_to_first_token_seconds_count" in metrics and "fairway_engine_" in metrics


def test_whole_and_streamed_greedy_agree(service):
    url, _ = service
    whole = call(url, "/v1/chat/completions", chat()).json()
    assert whole["usage"]["completion_tokens"] <= 8 and whole["choices"][0]["finish_reason"] in ("stop", "length")
    events = call(url, "/v1/chat/completions", chat(stream=True, stream_options={"include_usage": True})).text
    payloads = [e[6:] for e in events.split("\n\n") if e]
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[0]["fairway"]["prompt_tokens"] == whole["usage"]["prompt_tokens"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert sum(c["fairway"].get("tokens", 0) for c in chunks if "fairway" in c) == whole["usage"]["completion_tokens"]
    assert chunks[-1]["usage"] == whole["usage"]


def test_context_rules(service):
    url, _ = service
    long_prompt = chat(messages=[{"role": "user", "content": "x" * 600}])
    response = call(url, "/v1/chat/completions", long_prompt)
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
    too_many = call(url, "/v1/chat/completions", chat(max_tokens=CONTEXT))
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "max_tokens"
    clamped = call(url, "/v1/completions", {"model": MODEL, "prompt": "x" * 500, "max_tokens": CONTEXT,
                                            "fairway_clamp_max_tokens": True, "temperature": 0})
    assert clamped.status_code == 200 and clamped.json()["usage"]["total_tokens"] <= CONTEXT


@pytest.mark.parametrize("body, status", [
    ({"model": "other", "messages": [{"role": "user", "content": "x"}]}, 404),
    ({"model": MODEL, "messages": []}, 400),
    ({"model": MODEL, "prompt": 5}, 400),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "temperature": 3}, 400),
])
def test_bad_internal_requests(service, body, status):
    url, _ = service
    path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
    response = call(url, path, body)
    assert response.status_code == status and "error" in response.json()


def test_disconnect_cancels_and_frees_the_cache(service, caplog):
    url, engine = service
    body = chat(stream=True, max_tokens=400, ignore_eos=True)
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        lines = response.iter_lines()
        next(lines)
        next(lines)
    deadline = time.monotonic() + 10
    while engine.stats()["running"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.stats()["running"] == 0
    time.sleep(0.2)
    # A client leaving is not a server error: no "Exception in ASGI application" in the log.
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]


def test_ready_needs_no_token(service):
    url, _ = service
    assert httpx.get(url + "/ready").json() == {"ready": True}

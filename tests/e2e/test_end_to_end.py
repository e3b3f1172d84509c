"""Gateway + inference service as real processes, driven by the official openai client."""

import time

import httpx
import openai
import pytest

from .conftest import TINY_MODEL

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
MESSAGES = [{"role": "user", "content": "Tell me a short story about a cat named Tom."}]


def client_for(live_fairway, key):
    return openai.OpenAI(base_url=live_fairway["gateway"] + "/v1", api_key=key, max_retries=0, timeout=60)


def engine_stats(live_fairway) -> dict:
    headers = {"Authorization": f"Bearer {live_fairway['token']}"}
    return httpx.get(live_fairway["inference"] + "/health", headers=headers).json()["engine"]


def test_models_and_greedy_chat_stream_equals_whole(live_fairway, e2e_key):
    client = client_for(live_fairway, e2e_key)
    assert [m.id for m in client.models.list()] == [TINY_MODEL]
    whole = client.chat.completions.create(model=TINY_MODEL, messages=MESSAGES, max_tokens=12, temperature=0)
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert 0 < whole.usage.completion_tokens <= 12 and whole.usage.prompt_tokens > 10
    chunks = list(client.chat.completions.create(model=TINY_MODEL, messages=MESSAGES, max_tokens=12, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_and_seeded_sampling(live_fairway, e2e_key):
    client = client_for(live_fairway, e2e_key)
    first = client.completions.create(model=TINY_MODEL, prompt="Once upon a time", max_tokens=10, seed=42,
                                      temperature=1.0)
    again = client.completions.create(model=TINY_MODEL, prompt="Once upon a time", max_tokens=10, seed=42,
                                      temperature=1.0)
    assert first.choices[0].text == again.choices[0].text
    assert first.usage.completion_tokens == again.usage.completion_tokens > 0


def test_context_length_exceeded_is_400(live_fairway, e2e_key):
    client = client_for(live_fairway, e2e_key)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=TINY_MODEL, messages=[{"role": "user", "content": "x" * 600}])
    assert caught.value.body["code"] == "context_length_exceeded"


def test_disconnect_cancels_generation(live_fairway, e2e_key):
    body = {"model": TINY_MODEL, "messages": MESSAGES, "max_tokens": 400, "stream": True}
    with httpx.stream("POST", live_fairway["gateway"] + "/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {e2e_key}"}) as response:
        assert response.status_code == 200
        next(response.iter_lines())
    deadline = time.monotonic() + 10
    while engine_stats(live_fairway)["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = engine_stats(live_fairway)
    assert stats["running"] == 0 and stats["kv_cache"]["used_tokens"] == 0, stats


def test_bad_key_is_401(live_fairway, e2e_key):
    with pytest.raises(openai.AuthenticationError):
        client_for(live_fairway, e2e_key[:-1] + ("A" if e2e_key[-1] != "A" else "B")).models.list()

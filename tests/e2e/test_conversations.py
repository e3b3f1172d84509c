"""A stored multi-turn conversation through the real gateway and inference processes (tiny random Llama),
driven by the official openai client with `extra_body={"conversation": id}`."""

import httpx
import openai
import pytest

from gateway.tokens import PromptCounter

from .conftest import TINY_MODEL

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SYSTEM = "You are a helpful cat."


def api(live_fairway, key, method, path, **kwargs):
    return httpx.request(method, live_fairway["gateway"] + path, headers={"Authorization": f"Bearer {key}"},
                         timeout=30, **kwargs)


def counter_for(live_fairway) -> PromptCounter:
    response = httpx.get(live_fairway["inference"] + "/v1/tokenizer",
                         headers={"Authorization": f"Bearer {live_fairway['token']}"})
    return PromptCounter.from_payload(response.json())


def test_multi_turn_conversation_with_the_openai_client(live_fairway, e2e_key):
    client = openai.OpenAI(base_url=live_fairway["gateway"] + "/v1", api_key=e2e_key, max_retries=0, timeout=60)
    conv = api(live_fairway, e2e_key, "POST", "/v1/conversations", json={"system_prompt": SYSTEM}).json()["id"]
    counter = counter_for(live_fairway)
    history = [{"role": "system", "content": SYSTEM}]
    for turn, question in enumerate(["Hi, who are you?", "Tell me about Tom.", "And then?"]):
        kwargs = dict(model=TINY_MODEL, messages=[{"role": "user", "content": question}], max_tokens=8,
                      temperature=0, extra_body={"conversation": conv})
        if turn == 1:  # one streamed turn
            chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True},
                                                         **kwargs))
            reply = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            prompt_tokens = chunks[-1].usage.prompt_tokens
        else:
            whole = client.chat.completions.create(**kwargs)
            reply, prompt_tokens = whole.choices[0].message.content, whole.usage.prompt_tokens
        history.append({"role": "user", "content": question})
        # The service's own prompt count proves the whole history was forwarded, in order.
        assert prompt_tokens == counter.chat_tokens(history)
        history.append({"role": "assistant", "content": reply})
    stored = api(live_fairway, e2e_key, "GET", f"/v1/conversations/{conv}/messages").json()["data"]
    assert [{"role": m["role"], "content": m["content"]} for m in stored] == history[1:]
    # Same greedy reply as sending the full history by hand: the gateway forwarded exactly that.
    explicit = client.chat.completions.create(model=TINY_MODEL, messages=history[:-1], max_tokens=8, temperature=0)
    assert explicit.choices[0].message.content == history[-1]["content"]


def test_history_longer_than_the_context_is_truncated(live_fairway, e2e_key):
    client = openai.OpenAI(base_url=live_fairway["gateway"] + "/v1", api_key=e2e_key, max_retries=0, timeout=60)
    conv = api(live_fairway, e2e_key, "POST", "/v1/conversations", json={"system_prompt": SYSTEM}).json()["id"]
    long_history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "meow " * 10}
                    for i in range(40)]  # ~2,400 byte-level tokens against a 512-token context
    assert api(live_fairway, e2e_key, "POST", f"/v1/conversations/{conv}/messages",
               json={"messages": long_history}).status_code == 201
    reply = client.chat.completions.create(model=TINY_MODEL, messages=[{"role": "user", "content": "Still there?"}],
                                           max_tokens=16, temperature=0, extra_body={"conversation": conv})
    counter = counter_for(live_fairway)
    assert reply.usage.prompt_tokens <= counter.context_length - 16
    assert reply.usage.prompt_tokens > counter.chat_tokens([{"role": "system", "content": SYSTEM},
                                                            {"role": "user", "content": "Still there?"}])
    stored = api(live_fairway, e2e_key, "GET", f"/v1/conversations/{conv}").json()
    assert stored["message_count"] == 42

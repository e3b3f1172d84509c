import pytest

from gateway.errors import ApiError
from gateway.validation import parse_json_body, validate_chat, validate_completion

LIMIT = 256
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def chat_error(**changes) -> ApiError:
    body = {**CHAT, **changes}
    with pytest.raises(ApiError) as caught:
        validate_chat(body, max_tokens_limit=LIMIT)
    assert caught.value.status == 400
    return caught.value


def test_valid_chat_defaults():
    request = validate_chat(dict(CHAT), max_tokens_limit=LIMIT)
    assert request.messages == ({"role": "user", "content": "hi"},)
    assert request.params.max_tokens == LIMIT and not request.params.max_tokens_explicit
    assert request.params.temperature == 1.0 and request.params.top_p == 1.0
    assert not request.stream and not request.include_usage


def test_unknown_fields_are_tolerated_and_text_parts_joined():
    body = {**CHAT, "messages": [{"role": "developer", "content": [{"type": "text", "text": "a"},
                                                                   {"type": "text", "text": "b"}]}],
            "user": "u-1", "some_future_field": {"x": 1}, "presence_penalty": 0.5}
    request = validate_chat(body, max_tokens_limit=LIMIT)
    assert request.messages == ({"role": "system", "content": "ab"},)


@pytest.mark.parametrize("changes, param", [
    ({"model": ""}, "model"),
    ({"model": 5}, "model"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": ["hi"]}, "messages[0]"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages[0].content"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": LIMIT + 1}, "max_tokens"),
    ({"max_tokens": "10"}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"max_completion_tokens": 10_000}, "max_completion_tokens"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"n": 2}, "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": [1]}, "stop"),
    ({"stop": [""]}, "stop"),
    ({"seed": 1.5}, "seed"),
    ({"stream": "yes"}, "stream"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"tools": [{"type": "function"}]}, "tools"),
    ({"logprobs": True}, "logprobs"),
])
def test_invalid_chat_fields_name_the_parameter(changes, param):
    error = chat_error(**changes)
    assert error.param == param
    assert error.body()["error"]["type"] == "invalid_request_error"


def test_edges_are_accepted():
    request = validate_chat({**CHAT, "max_tokens": LIMIT, "temperature": 0, "top_p": 1, "n": 1, "stop": "###",
                             "stream": True, "stream_options": {"include_usage": True}, "seed": 7},
                            max_tokens_limit=LIMIT)
    assert request.params.max_tokens == LIMIT and request.params.max_tokens_explicit
    assert request.params.stop == ("###",) and request.params.seed == 7
    assert request.stream and request.include_usage


def test_completion_prompt_forms():
    assert validate_completion({"model": "m", "prompt": ["once"]}, max_tokens_limit=LIMIT).prompt == "once"
    request = validate_completion({"model": "m", "prompt": "once"}, max_tokens_limit=LIMIT)
    assert request.params.max_tokens == 16
    for bad in ({"prompt": ""}, {"prompt": ["a", "b"]}, {"prompt": [1, 2]}, {"prompt": "x", "echo": True},
                {"prompt": "x", "best_of": 3}, {"prompt": "x", "suffix": "y"}):
        with pytest.raises(ApiError):
            validate_completion({"model": "m", **bad}, max_tokens_limit=LIMIT)


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"\xff\xfe", b"null"])
def test_invalid_json(raw):
    with pytest.raises(ApiError) as caught:
        parse_json_body(raw)
    assert caught.value.status == 400 and caught.value.code == "invalid_json"

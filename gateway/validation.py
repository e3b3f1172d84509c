"""Validation of OpenAI request bodies into small immutable values.

Pure Python (no Django models): every rule answers a 400 in OpenAI's shape naming the bad field.
Unknown fields are tolerated, as OpenAI does; known-but-unsupported features are refused clearly
rather than silently ignored (tools, logprobs, n > 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import ApiError, invalid_request

CHAT_ROLES = {"system", "developer", "user", "assistant"}
MAX_STOP_SEQUENCES = 4
MAX_STOP_LENGTH = 256
DEFAULT_COMPLETIONS_MAX_TOKENS = 16  # OpenAI's legacy completions default


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int
    # False when the client gave no max_tokens: the service may then clamp it to the context left.
    max_tokens_explicit: bool
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[dict, ...]
    params: GenerationParams
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    prompt: str
    params: GenerationParams
    stream: bool
    include_usage: bool


def parse_json_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid_request(f"We could not parse the JSON body of your request: {exc}.", code="invalid_json")
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    return body


def validate_chat(body: dict, *, max_tokens_limit: int) -> ChatRequest:
    model = _model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("'messages' must be a non-empty array of message objects.", param="messages")
    normalized = tuple(_message(message, index) for index, message in enumerate(messages))
    _refuse_unsupported(body, ("tools", "functions", "tool_choice", "function_call"), "Tool calling")
    _refuse_true(body, "logprobs")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    params = _generation_params(body, max_tokens, param, max_tokens_limit, default=max_tokens_limit)
    stream, include_usage = _stream(body)
    return ChatRequest(model=model, messages=normalized, params=params, stream=stream, include_usage=include_usage)


def validate_completion(body: dict, *, max_tokens_limit: int) -> CompletionRequest:
    model = _model(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid_request("'prompt' must be a string (or an array holding exactly one string).",
                              param="prompt")
    if not prompt:
        raise invalid_request("'prompt' must not be empty.", param="prompt")
    _refuse_true(body, "echo")
    if body.get("suffix") not in (None, ""):
        raise invalid_request("'suffix' is not supported by this model.", param="suffix")
    if body.get("logprobs") not in (None, 0):
        raise invalid_request("'logprobs' is not supported.", param="logprobs")
    if body.get("best_of") not in (None, 1):
        raise invalid_request("'best_of' must be 1.", param="best_of")
    default = min(DEFAULT_COMPLETIONS_MAX_TOKENS, max_tokens_limit)
    params = _generation_params(body, body.get("max_tokens"), "max_tokens", max_tokens_limit, default=default)
    stream, include_usage = _stream(body)
    return CompletionRequest(model=model, prompt=prompt, params=params, stream=stream, include_usage=include_usage)


def _model(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid_request("You must provide a model parameter.", param="model")
    return model


def _message(message, index: int) -> dict:
    param = f"messages[{index}]"
    if not isinstance(message, dict):
        raise invalid_request(f"{param} must be an object with 'role' and 'content'.", param=param)
    role = message.get("role")
    if role == "tool" or role == "function":
        raise invalid_request(f"{param}.role '{role}' is not supported: this model has no tool calling.",
                              param=f"{param}.role")
    if role not in CHAT_ROLES:
        raise invalid_request(f"{param}.role must be one of {sorted(CHAT_ROLES)}, got {role!r}.",
                              param=f"{param}.role")
    content = _content_text(message.get("content"), f"{param}.content")
    return {"role": "system" if role == "developer" else role, "content": content}


def _content_text(content, param: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid_request(f"{param} parts must be {{'type': 'text', 'text': str}}; "
                                      "images, audio and files are not supported.", param=param)
            texts.append(part["text"])
        return "".join(texts)
    raise invalid_request(f"{param} must be a string or a non-empty array of text parts.", param=param)


def _generation_params(body: dict, max_tokens, param: str, limit: int, *, default: int) -> GenerationParams:
    if max_tokens is not None:
        if not _is_int(max_tokens) or not 1 <= max_tokens <= limit:
            raise invalid_request(f"'{param}' must be an integer between 1 and {limit} (your plan's limit).",
                                  param=param)
    temperature = _number(body, "temperature", 1.0, low=0.0, high=2.0)
    top_p = _number(body, "top_p", 1.0, low=0.0, high=1.0, low_inclusive=False)
    n = body.get("n", 1)
    if n is not None and (not _is_int(n) or n != 1):
        raise invalid_request("Only n=1 is supported.", param="n")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise invalid_request("'seed' must be an integer.", param="seed")
    for name in ("presence_penalty", "frequency_penalty"):
        _number(body, name, 0.0, low=-2.0, high=2.0)  # validated for compatibility; not applied
    return GenerationParams(max_tokens=max_tokens if max_tokens is not None else default,
                            max_tokens_explicit=max_tokens is not None, temperature=temperature, top_p=top_p,
                            seed=seed, stop=_stop(body.get("stop")))


def _stop(stop) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise invalid_request("'stop' must be a string or an array of strings.", param="stop")
    if len(stop) > MAX_STOP_SEQUENCES:
        raise invalid_request(f"'stop' accepts at most {MAX_STOP_SEQUENCES} sequences.", param="stop")
    if any(not item or len(item) > MAX_STOP_LENGTH for item in stop):
        raise invalid_request(f"Each stop sequence must be 1 to {MAX_STOP_LENGTH} characters.", param="stop")
    return tuple(stop)


def _stream(body: dict) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise invalid_request("'stream' must be a boolean.", param="stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise invalid_request("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise invalid_request("'stream_options.include_usage' must be a boolean.", param="stream_options")
    return stream, bool(options.get("include_usage", False))


def _number(body: dict, name: str, default: float, *, low: float, high: float, low_inclusive: bool = True) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid_request(f"'{name}' must be a number.", param=name)
    too_low = value < low if low_inclusive else value <= low
    if too_low or value > high:
        bracket = "[" if low_inclusive else "("
        raise invalid_request(f"'{name}' must be in {bracket}{low:g}, {high:g}], got {value}.", param=name)
    return float(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refuse_unsupported(body: dict, names: tuple[str, ...], feature: str) -> None:
    for name in names:
        if body.get(name) not in (None, [], "none"):
            raise invalid_request(f"{feature} is not supported by this model ('{name}').", param=name)


def _refuse_true(body: dict, name: str) -> None:
    if body.get(name) not in (None, False):
        raise invalid_request(f"'{name}' is not supported.", param=name)


__all__ = ["ApiError", "ChatRequest", "CompletionRequest", "GenerationParams", "parse_json_body",
           "validate_chat", "validate_completion"]

"""Parsing of internal generation requests (from the gateway) into engine requests.

The gateway validates client input fully; this is a second, cheaper check so a misbehaving caller
gets a clear 400 instead of an engine failure. Context-length rules live here because only the
inference service knows the prompt's token count.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from . import protocol
from .engine.sequence import SamplingParams


class BadRequest(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type_: str = "invalid_request_error", retry_after: float | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.type_ = status, message, code, param, type_
        self.headers = {} if retry_after is None else {"Retry-After": str(max(1, round(retry_after)))}


@dataclass(frozen=True)
class ParsedRequest:
    request_id: str
    tenant_id: str
    weight: float
    stream: bool
    include_usage: bool
    max_tokens: int
    clamp_max_tokens: bool
    temperature: float
    top_p: float
    top_k: int
    seed: int | None
    stop: tuple[str, ...]
    ignore_eos: bool
    messages: list[dict] = field(default_factory=list)
    prompt: str = ""

    def sampling_for_prompt(self, prompt_tokens: int, context_length: int) -> SamplingParams:
        room = context_length - prompt_tokens
        if room <= 0:
            raise BadRequest(400, f"This model's maximum context length is {context_length} tokens; your "
                                  f"prompt has {prompt_tokens} tokens.", code="context_length_exceeded",
                             param="messages")
        max_tokens = self.max_tokens
        if max_tokens > room:
            if not self.clamp_max_tokens:
                raise BadRequest(400, f"This model's maximum context length is {context_length} tokens. However, "
                                      f"you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
                                      f"prompt, {max_tokens} for the completion).",
                                 code="context_length_exceeded", param="max_tokens")
            max_tokens = room
        return SamplingParams(max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p,
                              top_k=self.top_k, seed=self.seed, stop=self.stop, ignore_eos=self.ignore_eos)


def parse_generation_request(raw: bytes, *, chat: bool, headers: dict, served_model: str) -> ParsedRequest:
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest(400, "Invalid JSON body.", code="invalid_json")
    if not isinstance(body, dict):
        raise BadRequest(400, "The body must be a JSON object.", code="invalid_json")
    if body.get("model") != served_model:
        raise BadRequest(404, f"The model '{body.get('model')}' does not exist.", code="model_not_found",
                         param="model")
    try:
        weight = float(headers.get(protocol.WEIGHT_HEADER, "1"))
    except ValueError:
        weight = 0.0
    if not weight > 0:
        raise BadRequest(400, "x-fairway-weight must be a positive number.", code="invalid_weight")
    options = body.get("stream_options") or {}
    common = dict(
        request_id=headers.get(protocol.REQUEST_ID_HEADER) or f"req_{uuid.uuid4().hex}",
        tenant_id=headers.get(protocol.TENANT_HEADER, "anonymous"), weight=weight,
        stream=bool(body.get("stream", False)), include_usage=bool(options.get("include_usage", False)),
        max_tokens=_int(body, "max_tokens", 16 if not chat else 256, low=1),
        clamp_max_tokens=bool(body.get(protocol.CLAMP_FIELD, False)),
        temperature=_float(body, "temperature", 1.0, low=0.0, high=2.0),
        top_p=_float(body, "top_p", 1.0, low=1e-9, high=1.0), top_k=_int(body, "top_k", 0, low=0),
        seed=_optional_int(body, "seed"), stop=_stop(body.get("stop")),
        ignore_eos=bool(body.get("ignore_eos", False)),
    )
    if chat:
        messages = body.get("messages")
        valid = isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages)
        if not valid:
            raise BadRequest(400, "'messages' must be a non-empty list of {role, content} strings.",
                             param="messages")
        return ParsedRequest(messages=[{"role": m["role"], "content": m["content"]} for m in messages], **common)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise BadRequest(400, "'prompt' must be a non-empty string.", param="prompt")
    return ParsedRequest(prompt=prompt, **common)


def _int(body: dict, name: str, default: int, *, low: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise BadRequest(400, f"'{name}' must be an integer ≥ {low}.", param=name)
    return value


def _optional_int(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise BadRequest(400, f"'{name}' must be an integer.", param=name)
    return value


def _float(body: dict, name: str, default: float, *, low: float, high: float) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadRequest(400, f"'{name}' must be a number in [{low:g}, {high:g}].", param=name)
    return float(value)


def _stop(stop) -> tuple[str, ...]:
    if stop is None:
        return ()
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest(400, "'stop' must be a string or up to 4 non-empty strings.", param="stop")
    return tuple(stop)

"""The wire protocol between gateway and inference service, and OpenAI's response shapes.

Pure Python (no torch, no Django): the gateway imports it as the client of the inference service;
the inference service never imports the gateway.

Internal requests are OpenAI requests plus headers: `Authorization: Bearer <internal token>`,
`x-fairway-tenant` (tenant id), `x-fairway-weight` (fair-share weight), `x-request-id`. Internal
stream chunks are OpenAI chunks with one extra object, `fairway`: {"tokens": n} on every chunk
(generated tokens that chunk accounts for, so the gateway counts what it delivers) and
{"prompt_tokens": n} on the first one.
"""

from __future__ import annotations

import json
import re

TENANT_HEADER = "x-fairway-tenant"
WEIGHT_HEADER = "x-fairway-weight"
REQUEST_ID_HEADER = "x-request-id"
# Internal request field: clamp max_tokens to the context left instead of refusing (client gave none).
CLAMP_FIELD = "fairway_clamp_max_tokens"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_chunk(completion_id: str, created: int, model: str, *, delta: dict,
               finish_reason: str | None = None) -> dict:
    return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}


def completion_chunk(completion_id: str, created: int, model: str, *, text: str,
                     finish_reason: str | None = None) -> dict:
    return {"id": completion_id, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}]}


def usage_chunk(completion_id: str, created: int, model: str, *, chat: bool, usage_: dict) -> dict:
    """The extra final chunk of `stream_options.include_usage`: no choices, only usage."""
    return {"id": completion_id, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created, "model": model, "system_fingerprint": None, "choices": [], "usage": usage_}


def chat_completion(completion_id: str, created: int, model: str, *, text: str, finish_reason: str,
                    usage_: dict) -> dict:
    return {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage_}


def text_completion(completion_id: str, created: int, model: str, *, text: str, finish_reason: str,
                    usage_: dict) -> dict:
    return {"id": completion_id, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage_}


def model_card(model_id: str, created: int, owned_by: str = "fairway") -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


def error_body(message: str, *, type_: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# JSON with ensure_ascii=False leaves U+2028, U+2029 and U+0085 raw, and some line readers (httpx's
# aiter_lines, str.splitlines) end a line there, cutting an SSE event in two. Escaped, they are the
# same JSON string, and the event stays on one line for every reader.
_LINE_BREAKERS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})
_LINE_END = re.compile(rb"\r\n|\r|\n")


def sse_data(payload: dict) -> bytes:
    """One server-sent event, `data: <json>\\n\\n`, in UTF-8."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).translate(_LINE_BREAKERS)
    return b"data: " + text.encode() + b"\n\n"


async def aiter_sse_data(chunks):
    """The data payloads of an SSE byte stream (async iterable of bytes). Lines end only at CRLF,
    LF or CR, as the SSE specification says; a line cut off by the end of the stream is dropped."""
    buffer = b""
    async for chunk in chunks:
        *lines, buffer = _LINE_END.split(buffer + chunk)
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip().decode(errors="replace")  # bad bytes fail the JSON parse, not here


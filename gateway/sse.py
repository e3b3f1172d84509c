"""Server-sent events framing, as OpenAI streams: `data: <json>\n\n` … `data: [DONE]\n\n`."""

import json

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def iter_sse_data(lines):
    """Yield the data payloads of an SSE line stream (sync iterable of str lines)."""
    for line in lines:
        if line.startswith("data:"):
            yield line[5:].strip()


async def aiter_sse_data(lines):
    """Async twin of iter_sse_data for httpx's `aiter_lines()`."""
    async for line in lines:
        if line.startswith("data:"):
            yield line[5:].strip()

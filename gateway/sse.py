"""Server-sent events framing, as OpenAI streams: `data: <json>\n\n` … `data: [DONE]\n\n`."""

from inference.protocol import sse_data

sse_event = sse_data  # one framing for the gateway's clients and the inference service's

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

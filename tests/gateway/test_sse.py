"""SSE framing shared by the gateway and the inference service (inference/protocol.py)."""

import asyncio
import json

from inference.protocol import aiter_sse_data, sse_data


def parse(chunks: list[bytes]) -> list[str]:
    async def collect():
        async def source():
            for chunk in chunks:
                yield chunk
        return [data async for data in aiter_sse_data(source())]

    return asyncio.run(collect())


def test_events_stay_on_one_line_for_every_line_reader():
    text = "a\u2028b\u2029c\x85d\re\nf"
    event = sse_data({"text": text})
    assert event.endswith(b"\n\n") and len(event[:-2].decode().splitlines()) == 1
    assert json.loads(event[len(b"data: "):]) == {"text": text}


def test_lines_end_only_at_cr_lf_and_crlf_even_across_chunks():
    stream = sse_data({"n": 1}) + b"data: {\"n\":2}\r\n\r\n" + "data: {\"t\":\"x\u2028y\"}\n\n".encode() + b"data: [DONE]\n\n"
    expected = ['{"n":1}', '{"n":2}', '{"t":"x\u2028y"}', "[DONE]"]
    assert parse([stream]) == expected
    assert parse([stream[i:i + 1] for i in range(len(stream))]) == expected  # byte by byte, CRLF split too


def test_a_line_cut_off_by_the_end_of_the_stream_is_dropped():
    assert parse([b'data: {"n":1}\n\ndata: {"n":']) == ['{"n":1}']

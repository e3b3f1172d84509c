"""Prompt fitting and the segment-cached token counter (pure: no database)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conversations import prompt
from conversations.tokencache import SegmentCounter
from gateway.errors import ApiError
from gateway.tokens import PromptCounter
from tests.support.fake_inference import tokenizer_payload

SMOLLM2 = Path(__file__).resolve().parents[2] / "var" / "models" / "smollm2-135m-instruct"
WORDS = ["cat", "Tom", "  ", "\n\n", "héllo", "🐈", "<|im_end|>", "window", "rain", "✓", "the", "\t", "ünïcode"]


def _smollm2_payload():
    """The real SmolLM2 tokenizer: the prepared copy under var/ if `./fairway up` made one, else read
    straight from the bundled GGUF (a few seconds), so these cases run on a fresh machine and in CI."""
    if (SMOLLM2 / "tokenizer.json").exists():
        config = json.loads((SMOLLM2 / "tokenizer_config.json").read_text())
        return {"tokenizer_json": (SMOLLM2 / "tokenizer.json").read_text(),
                "chat_template": (SMOLLM2 / "chat_template.jinja").read_text(),
                "special_tokens": {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")},
                "context_length": 8192}
    from transformers import AutoTokenizer

    from inference.loader import bundled_gguf_path

    gguf = bundled_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return {"tokenizer_json": tokenizer.backend_tokenizer.to_str(), "chat_template": tokenizer.chat_template,
            "special_tokens": tokenizer.special_tokens_map, "context_length": 8192}


COUNTERS = {"tiny": lambda: PromptCounter.from_payload(tokenizer_payload(512)),
            "smollm2": lambda: PromptCounter.from_payload(_smollm2_payload())}


@pytest.fixture(scope="module", params=sorted(COUNTERS))
def counter(request):
    return COUNTERS[request.param]()


def _conversation(rng: random.Random, turns: int) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant",
             "content": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))} for i in range(turns)]


def test_segment_counts_equal_the_plain_tokenizer(counter):
    tally = SegmentCounter(counter)
    assert tally.exact_split
    rng = random.Random(7)
    for _ in range(30):
        messages = [{"role": "system", "content": "sys"}] * rng.randint(0, 1) + _conversation(rng, rng.randint(1, 12))
        assert tally.chat_tokens(messages) == counter.chat_tokens(messages)
        assert tally.chat_tokens(messages) == counter.chat_tokens(messages)  # and from the cache


@pytest.mark.parametrize("seed", range(6))
def test_fit_is_exact_maximal_and_keeps_the_system_prompt(counter, seed):
    rng = random.Random(seed)
    history = _conversation(rng, rng.randint(10, 80))
    system = [{"role": "system", "content": "You are terse."}] if seed % 2 else []
    new = [{"role": "user", "content": "newest?"}]
    budget = rng.randint(counter.chat_tokens(system + new) + 5, counter.chat_tokens(system + history + new) + 50)
    batches = [history[::-1][i:i + 7] for i in range(0, len(history), 7)]
    fitted = prompt.history_fit(counter=counter, system=system, history_batches=batches, new=new, budget=budget)
    assert fitted.messages[:len(system)] == system and fitted.messages[-1] == new[0]
    kept = fitted.messages[len(system):-1]
    assert kept == history[len(history) - len(kept):]  # a newest suffix
    assert fitted.prompt_tokens == counter.chat_tokens(fitted.messages) <= budget
    if len(kept) < len(history):
        assert not kept or kept[0]["role"] == "user"
        start = len(history) - len(kept) - 1
        while start > 0 and history[start]["role"] != "user":
            start -= 1
        assert counter.chat_tokens(system + history[start:] + new) > budget  # one more whole turn would not fit


def test_everything_fits_and_nothing_too_long(counter):
    history = [{"role": "assistant", "content": "I start."}, {"role": "user", "content": "ok"}]
    new = [{"role": "user", "content": "hi"}]
    fitted = prompt.history_fit(counter=counter, system=[], history_batches=[history[::-1]], new=new, budget=4096)
    assert fitted.messages == history + new and fitted.history_used == 2  # whole history, as stored
    with pytest.raises(ApiError) as caught:
        prompt.history_fit(counter=counter, system=[{"role": "system", "content": "x" * 600}], history_batches=[],
                           new=new, budget=100)
    assert caught.value.code == "context_length_exceeded" and caught.value.status == 400


def test_loading_stops_once_nothing_older_could_fit(counter):
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 50} for i in range(400)]
    pulled = []

    def batches():
        for i in range(0, 400, 50):
            pulled.append(i)
            yield history[::-1][i:i + 50]

    fitted = prompt.history_fit(counter=counter, system=[], history_batches=batches(),
                                new=[{"role": "user", "content": "q"}], budget=300)
    assert fitted.prompt_tokens <= 300 and len(pulled) < 8


def test_templates_that_rewrite_content_still_never_exceed_the_budget():
    payload = tokenizer_payload(512)
    template = payload["chat_template"].replace("message['content']", "message['content'] | upper")
    counter = PromptCounter.from_payload({**payload, "chat_template": template})
    rng = random.Random(3)
    history = _conversation(rng, 60)
    new = [{"role": "user", "content": "newest?"}]
    for budget in (120, 300, 450):
        fitted = prompt.history_fit(counter=counter, system=[], history_batches=[history[::-1]], new=new,
                                    budget=budget)
        assert fitted.prompt_tokens == counter.chat_tokens(fitted.messages) <= budget
        assert fitted.messages[-1] == new[0]
        if counter.chat_tokens(history[-2:] + new) <= budget:  # the newest turn fits, so it was kept
            assert fitted.history_used >= 2

"""The gateway's torch-free prompt counter must agree exactly with the inference service's tokenizer."""

import pytest

from gateway.tokens import PromptCounter
from inference.tokenization import PromptBuilder
from tests.support.tiny_model import build_tokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Héllo wörld — ünïcode ✓ 🐈"},
     {"role": "assistant", "content": "Hi!\n\nHow can I help?"}, {"role": "user", "content": "  spaces  "}],
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chat_counts_match_the_service(tokenizer, messages):
    counter = PromptCounter(tokenizer_json=tokenizer.backend_tokenizer.to_str(),
                            chat_template=tokenizer.chat_template, special_tokens=tokenizer.special_tokens_map,
                            context_length=512)
    expected = PromptBuilder(tokenizer).chat_prompt_ids(messages)
    assert counter.render_chat(messages) == tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                                          tokenize=False)
    assert counter.chat_tokens(messages) == len(expected)
    assert counter.text_tokens("Once upon a time") == len(PromptBuilder(tokenizer).completion_prompt_ids(
        "Once upon a time"))

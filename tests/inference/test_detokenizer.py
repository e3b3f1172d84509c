"""Incremental detokenizer: UTF-8 safety, stop strings across tokens, hold-back and flush."""
import pytest

from inference.engine.detokenizer import IncrementalDetokenizer
from tests.support.tiny_model import tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def feed(detok, ids):
    return [detok.add_token(t) for t in ids]


def test_multibyte_characters_are_never_split(tokenizer):
    text = "é€ 😀 hello"
    ids = tokenizer.encode(text)
    assert len(ids) > len(text) - 3  # byte-level: multi-byte characters span several tokens
    detok = IncrementalDetokenizer(tokenizer, tokenizer.encode("the cat"))
    parts = feed(detok, ids)
    assert all("\ufffd" not in p for p in parts)
    assert "".join(parts) + detok.flush() == text


def test_stop_string_spanning_tokens_is_never_shown(tokenizer):
    text = "hello the cat STOP and more"
    ids = tokenizer.encode(text)
    detok = IncrementalDetokenizer(tokenizer, [], stop=("STOP",))
    shown = ""
    for t in ids:
        shown += detok.add_token(t)
        assert "S" not in shown  # not even the first character of the stop string
        if detok.stopped:
            break
    assert detok.stopped and shown == "hello the cat "


def test_partial_stop_prefix_is_held_then_released(tokenizer):
    detok = IncrementalDetokenizer(tokenizer, [], stop=("cat!",))
    shown = "".join(feed(detok, tokenizer.encode("the ca")))
    assert shown == "the "  # "ca" might become "cat!"
    shown += "".join(feed(detok, tokenizer.encode("tfish")))
    assert shown == "the catfish" and not detok.stopped


def test_flush_releases_held_text_at_the_end(tokenizer):
    detok = IncrementalDetokenizer(tokenizer, [], stop=("world",))
    shown = "".join(feed(detok, tokenizer.encode("hello wor")))
    assert shown == "hello "
    assert detok.flush() == "wor"


def test_earliest_of_several_stop_strings_wins(tokenizer):
    detok = IncrementalDetokenizer(tokenizer, [], stop=("zz", "the"))
    shown = "".join(feed(detok, tokenizer.encode("a then zz")))
    assert detok.stopped and shown == "a "

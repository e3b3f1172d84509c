"""Incremental detokenization with stop strings.

Text is released only when it is final: a token that ends inside a multi-byte character
decodes to U+FFFD and is held until the character completes, and any tail that could be the
start of a stop string is held until it is ruled out. A stop string ends generation; it and
anything after it are never shown.
"""
from __future__ import annotations

# Prompt tokens decoded ahead of the output so that tokenizers which drop a leading space on
# the first token of a decode (SentencePiece) still produce the right first word.
CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    def __init__(self, tokenizer, prompt_token_ids: list[int], stop: tuple[str, ...] = ()):
        self._tokenizer = tokenizer
        self._ids = list(prompt_token_ids[-CONTEXT_TOKENS:])
        self._prefix_offset = 0  # start of the window decoded for context
        self._read_offset = len(self._ids)  # tokens before this are already turned into text
        self._stop = stop
        self._held = ""  # decoded text not released yet (may start a stop string)
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add_token(self, token_id: int) -> str:
        """Feed one generated token; returns newly releasable text (maybe ''). Sets .stopped
        when a stop string completed (the returned text then ends just before it)."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix_offset:self._read_offset])
        full_text = self._decode(self._ids[self._prefix_offset:])
        if len(full_text) <= len(prefix_text) or full_text.endswith("\ufffd"):
            return self._release("")  # incomplete character or no visible text yet
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return self._release(full_text[len(prefix_text):])

    def flush(self) -> str:
        """At the end of generation: release whatever is still held."""
        if self.stopped:
            return ""
        window = self._ids[self._prefix_offset:]
        tail = self._decode(window)[len(self._decode(window[:self._read_offset - self._prefix_offset])):]
        text, self._held = self._held + tail, ""
        self._read_offset = len(self._ids)
        return text

    def _release(self, new_text: str) -> str:
        text = self._held + new_text
        if not self._stop:
            self._held = ""
            return text
        hits = [i for i in (text.find(s) for s in self._stop) if i >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return text[:min(hits)]
        keep = self._stop_prefix_length(text)
        self._held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def _stop_prefix_length(self, text: str) -> int:
        """Length of the longest suffix of text that is a proper prefix of some stop string."""
        best = 0
        for stop in self._stop:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if stop.startswith(text[-n:]):
                    best = n
                    break
        return best

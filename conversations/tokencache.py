"""Exact prompt token counts with a per-segment cache, so a conversation's history is tokenized once
per process instead of on every turn (a warm 200-message prompt costs a render and dict lookups).

Why it is exact: HF `tokenizers` first cuts the input at its added tokens (the special ones, matched
on raw text, leftmost-longest), then normalizes, pre-tokenizes and BPE-encodes each piece on its
own. So count(text) = number of added-token matches + sum of count(piece). Chat templates wrap every
message in special tokens, so the pieces are per-message strings that repeat from turn to turn. The
cache is keyed by a BLAKE2b digest of the piece, never by the text (no plaintext kept in memory).
When a tokenizer's added tokens could behave otherwise (lstrip/rstrip/single_word) or a self-test
disagrees with the plain count, it falls back to encoding the whole text every time.
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass

MAX_ENTRIES = 200_000  # digests + ints: ~30 MB at worst
_SELF_TEST = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Héllo  wörld ✓ 🐈\n\n"},
              {"role": "assistant", "content": " spaced  out "}, {"role": "user", "content": "<|im_end|> in text"}]


@dataclass(frozen=True)
class Counted:
    tokens: int
    starts: list[int]  # character offset of each piece (an added token or the text between two)
    counts: list[int]  # tokens of each piece


class SegmentCounter:
    def __init__(self, counter):
        self.counter = counter
        self._cache: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()
        added = list(counter.tokenizer.get_added_tokens_decoder().values())
        simple = all(not (t.lstrip or t.rstrip or t.single_word) for t in added)
        raw = sorted({t.content for t in added if not t.normalized}, key=len, reverse=True)
        self._split = re.compile("|".join(map(re.escape, raw))) if raw else None
        self.exact_split = simple and self._self_test()
        vocab = counter.tokenizer.get_vocab()
        self.max_token_chars = max((len(token) for token in vocab), default=16)

    def _self_test(self) -> bool:
        self.exact_split = True
        try:
            text = self.counter.render_chat(_SELF_TEST)
        except Exception:  # noqa: BLE001 — a template that rejects the sample: do not trust splitting
            return False
        return self.count_text(text).tokens == len(self.counter.tokenizer.encode(text, add_special_tokens=False).ids)

    def count_text(self, text: str) -> Counted:
        """Exact token count of `text`, and where its pieces start (for attributing tokens to messages)."""
        if not self.exact_split or self._split is None:
            return Counted(len(self.counter.tokenizer.encode(text, add_special_tokens=False).ids), [], [])
        pieces: list[tuple[int, str | None]] = []  # (start, text) for a segment, (start, None) for an added token
        position = 0
        for match in self._split.finditer(text):
            if match.start() > position:
                pieces.append((position, text[position:match.start()]))
            pieces.append((match.start(), None))
            position = match.end()
        if position < len(text):
            pieces.append((position, text[position:]))
        keys = [(len(piece), hash(piece)) if piece is not None else None for _, piece in pieces]
        with self._lock:
            known = [self._cache.get(key) if key is not None else 1 for key in keys]
        missing = [i for i, count in enumerate(known) if count is None]
        if missing:
            encoded = self.counter.tokenizer.encode_batch_fast([pieces[i][1] for i in missing],
                                                               add_special_tokens=False)
            with self._lock:
                if len(self._cache) > MAX_ENTRIES:
                    self._cache.clear()  # crude but bounded; a cold turn costs one re-tokenization
                for i, encoding in zip(missing, encoded):
                    known[i] = self._cache[keys[i]] = len(encoding.ids)
        return Counted(sum(known), [start for start, _ in pieces], known)

    def chat_tokens(self, messages: list[dict]) -> int:
        return self.count_text(self.counter.render_chat(messages)).tokens


_counters: "weakref.WeakKeyDictionary[object, SegmentCounter]" = weakref.WeakKeyDictionary()
_counters_lock = threading.Lock()


def segment_counter(counter) -> SegmentCounter:
    """One SegmentCounter per PromptCounter (the gateway keeps one PromptCounter per served model)."""
    with _counters_lock:
        cached = _counters.get(counter)
        if cached is None:
            cached = _counters[counter] = SegmentCounter(counter)
        return cached

"""Fit a conversation into the model's context: system prompt + newest history + new messages.

Pure (no Django, no I/O besides pulling history batches from the iterator it is given). Counting is
exact, with the served model's tokenizer and chat template (gateway.tokens.PromptCounter) through a
per-segment cache (tokencache.py): the prompt is rendered once, counted, and if it is too long the
counted tokens are attributed to messages to pick the cut; the cut prompt is counted again, exactly,
before it is accepted. The result never exceeds `budget`; the oldest whole turns go first.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate

import jinja2

from gateway.errors import ApiError

from .tokencache import segment_counter


@dataclass(frozen=True)
class Fitted:
    messages: list[dict]
    prompt_tokens: int
    history_used: int  # history messages kept
    history_read: int  # history messages loaded and decrypted (kept or not)


def too_long(needed: int, budget: int) -> ApiError:
    return ApiError(400, f"The conversation's system prompt and the new messages need {needed} tokens, but the "
                    f"model's context leaves {budget} after reserving room for the reply. Shorten the message "
                    "or lower max_tokens.", code="context_length_exceeded", param="messages")


def _render(counter, messages: list[dict]) -> str:
    try:
        return counter.render_chat(messages)
    except jinja2.TemplateError as exc:  # e.g. a template that insists on strict user/assistant alternation
        raise ApiError(400, f"The model's chat template rejected this conversation: {exc.message}",
                       code="invalid_conversation", param="messages") from None


def _load(history_batches: Iterable[list[dict]], floor: int, budget: int, max_token_chars: int) -> list[dict]:
    """Newest-first history, read until even its cheapest possible token count could not fit."""
    loaded: list[dict] = []
    for batch in history_batches:
        for message in batch:
            loaded.append(message)
            floor += 1 + len(message["content"]) // max_token_chars
        if floor > budget:
            break
    loaded.reverse()
    return loaded


def _costs(text: str, counted, system: list[dict], history: list[dict]) -> list[float]:
    """Tokens attributable to each history message: those starting after the previous message's content
    and up to the end of its own (contents appear verbatim and in order in rendered chat templates)."""
    found = text.find(system[0]["content"]) if system else -1
    cursor = found + len(system[0]["content"]) if found >= 0 else 0
    boundaries = [cursor]
    for message in history:
        found = text.find(message["content"], cursor)
        if found < 0:  # a template that rewrites content: fall back to a share by length
            chars = sum(len(m["content"]) + 1 for m in history)
            return [counted.tokens * (len(m["content"]) + 1) / chars for m in history]
        cursor = found + len(message["content"])
        boundaries.append(cursor)
    prefix = [0, *accumulate(counted.counts)]
    marks = [bisect.bisect_left(counted.starts, boundary) for boundary in boundaries]
    return [prefix[marks[i + 1]] - prefix[marks[i]] for i in range(len(history))]


def _next_turn(history: list[dict], k: int) -> int:
    """First index ≥ k where a user message starts a turn (no orphan reply at the head)."""
    while k < len(history) and history[k]["role"] != "user":
        k += 1
    return k


def history_fit(*, counter, system: list[dict], history_batches: Iterable[list[dict]], new: list[dict],
                budget: int) -> Fitted:
    """Keep the newest whole turns that fit; raise 400 if even system + new messages do not."""
    tally = segment_counter(counter)
    base = tally.count_text(_render(counter, system + new)).tokens
    if base > budget:
        raise too_long(base, budget)
    history = _load(history_batches, base, budget, tally.max_token_chars)
    read = len(history)
    if not history:
        return Fitted(messages=system + new, prompt_tokens=base, history_used=0, history_read=0)
    text = _render(counter, system + history + new)
    counted = tally.count_text(text)
    total = counted.tokens
    if total <= budget:
        return Fitted(messages=system + history + new, prompt_tokens=total, history_used=read, history_read=read)
    costs = _costs(text, counted, system, history) if counted.starts else [total / read] * read
    k, removed = 0, 0.0
    while k < read and total - removed > budget:
        removed += costs[k]
        k += 1
    k = _next_turn(history, k)
    while True:  # the exact count decides; the attribution only chose where to start looking
        kept = history[k:]
        exact = tally.count_text(_render(counter, system + kept + new)).tokens if kept else base
        if exact <= budget:
            return Fitted(messages=system + kept + new, prompt_tokens=exact, history_used=len(kept),
                          history_read=read)
        deficit, start = exact - budget, k  # still over: skip ahead by the attributed costs, at least a turn
        while k < read and deficit > 0:
            deficit -= max(costs[k], 1)
            k += 1
        k = _next_turn(history, max(k, start + 1))

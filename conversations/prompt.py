"""Fit a conversation into the model's context: system prompt + newest history + new messages.

Pure (no Django, no I/O besides pulling history batches from the iterator it is given). The exact
count of the final prompt, with the model's own tokenizer and chat template (gateway.tokens.
PromptCounter), is what decides: per-message estimates only pick where to cut, so the common case
is one render + one encode of the whole prompt, and the result never exceeds `budget`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass

import jinja2

from gateway.errors import ApiError

_overheads: "weakref.WeakKeyDictionary[object, dict[str, int]]" = weakref.WeakKeyDictionary()


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


def _count(counter, messages: list[dict]) -> int:
    try:
        return counter.chat_tokens(messages)
    except jinja2.TemplateError as exc:  # e.g. a template that insists on strict user/assistant alternation
        raise ApiError(400, f"The model's chat template rejected this conversation: {exc.message}",
                       code="invalid_conversation", param="messages") from None


def _overhead(counter) -> dict[str, int]:
    """Template tokens each extra message adds, per role (estimates only)."""
    cached = _overheads.get(counter)
    if cached is None:
        cached = {}
        for role in ("user", "assistant"):
            one = {"role": role, "content": ""}
            try:
                cached[role] = counter.chat_tokens([one, one]) - counter.chat_tokens([one])
            except jinja2.TemplateError:
                cached[role] = 8
        _overheads[counter] = cached
    return cached


def history_fit(*, counter, system: list[dict], history_batches: Iterable[list[dict]], new: list[dict],
                budget: int) -> Fitted:
    """Keep the newest whole turns of history that fit; drop the oldest. Raises 400 if even
    system + new messages do not fit."""
    base = _count(counter, system + new)
    if base > budget:
        raise too_long(base, budget)
    overhead = _overhead(counter)
    kept: list[dict] = []  # newest first
    estimate, read, full = base, 0, False
    for batch in history_batches:
        read += len(batch)
        encoded = counter.tokenizer.encode_batch([m["content"] for m in batch], add_special_tokens=False)
        for message, tokens in zip(batch, encoded):
            estimate += len(tokens.ids) + overhead.get(message["role"], 8)
            if estimate > budget:
                full = True
                break
            kept.append(message)
        if full:
            break
    kept.reverse()
    _trim_to_turn(kept)
    messages = system + kept + new
    exact = _count(counter, messages) if kept else base
    while exact > budget and kept:  # the estimate was optimistic: drop whole turns until it fits
        kept.pop(0)
        _trim_to_turn(kept)
        messages = system + kept + new
        exact = _count(counter, messages) if kept else base
    return Fitted(messages=messages, prompt_tokens=exact, history_used=len(kept), history_read=read)


def _trim_to_turn(kept: list[dict]) -> None:
    """History starts at a user message, so a cut never leaves an orphan reply first."""
    while kept and kept[0]["role"] != "user":
        kept.pop(0)

"""The `conversation` field of POST /v1/chat/completions: the gateway's hook into stored history.

    turn = await turn_prepare(principal=…, body=…, request=parsed)   # None without `conversation`
    … forward turn.request (history + new messages, fitted to the context) …
    await turn_finish(turn=turn, outcome=run.outcome)                  # or wrap the SSE: turn_stream()

turn_prepare takes the conversation's turn lock (409 if another request holds it), decrypts the
history and fits it into the context. turn_finish stores the new user message(s) and the reply as
far as it was delivered (nothing if nothing was delivered) and releases the lock. While a turn
runs, a background task renews the lease, so a crashed worker frees the conversation within
FAIRWAY_CONVERSATION_LOCK_SECONDS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from uuid import UUID

from django.conf import settings

from config import dbthread
from gateway import upstream
from gateway.errors import invalid_request
from gateway.sse import DONE
from gateway.validation import ChatRequest
from tenants.authentication import require_scope

from . import crypto, errors, prompt, rules, selectors, services

logger = logging.getLogger("fairway.conversations")
FIELD = "conversation"
FINAL_ERROR = b'data: {"error"'  # the in-stream error event that ends a failed stream
MAX_HOLD_SECONDS = 3600  # renewals stop after this, even if a turn is never finished


@dataclasses.dataclass
class Turn:
    tenant_id: UUID
    conversation_id: UUID
    lock_token: UUID
    new_messages: tuple[dict, ...]
    request: ChatRequest  # what to forward: the fitted messages
    fitted: prompt.Fitted
    renewer: asyncio.Task | None = None
    finished: bool = False


def _new_messages(request: ChatRequest) -> list[dict]:
    for index, message in enumerate(request.messages):
        if message["role"] != "user":
            raise invalid_request(
                f"With '{FIELD}', send only the new user message(s): messages[{index}] has role "
                f"'{message['role']}'. The history and system prompt come from the conversation.",
                param=f"messages[{index}].role", code="invalid_role")
        rules.content_check(message["content"], param=f"messages[{index}].content")
    return [dict(message) for message in request.messages]


def _reply_reserve(request: ChatRequest) -> int:
    params = request.params
    if params.max_tokens_explicit:
        return params.max_tokens
    return min(params.max_tokens, settings.FAIRWAY_CONVERSATION_REPLY_RESERVE)


def _begin(*, tenant_id: UUID, conversation_id: UUID, new: list[dict], counter, budget: int):
    """One thread hop: lock, read the system prompt, stream-decrypt history, fit; unlock on failure."""
    token = services.conversation_lock(tenant_id=tenant_id, conversation_id=conversation_id)
    try:
        system_prompt = selectors.conversation_system_prompt(tenant_id=tenant_id, conversation_id=conversation_id)
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        batches = selectors.message_history_batches(tenant_id=tenant_id, conversation_id=conversation_id)
        fitted = prompt.history_fit(counter=counter, system=system, history_batches=batches, new=new, budget=budget)
    except crypto.DecryptionError:
        services.conversation_unlock(conversation_id=conversation_id, lock_token=token)
        logger.error("conversation history failed to decrypt: conversation=%s", conversation_id)
        raise errors.undecryptable() from None
    except BaseException:
        services.conversation_unlock(conversation_id=conversation_id, lock_token=token)
        raise
    return token, fitted


async def turn_prepare(*, principal, body: dict, request) -> Turn | None:
    raw = body.get(FIELD)
    if raw is None:
        return None
    if not isinstance(request, ChatRequest):
        raise invalid_request(f"'{FIELD}' is only supported on /v1/chat/completions.", param=FIELD)
    require_scope(principal, "conversations")
    conversation_id = errors.parse_uuid(raw, param=FIELD)
    new = _new_messages(request)
    counter = await upstream.prompt_counter(request.model)
    budget = counter.context_length - _reply_reserve(request)
    token, fitted = await dbthread.query(_begin, tenant_id=principal.tenant_id, conversation_id=conversation_id,
                                         new=new, counter=counter, budget=budget)
    turn = Turn(tenant_id=principal.tenant_id, conversation_id=conversation_id, lock_token=token,
                new_messages=tuple(new), request=dataclasses.replace(request, messages=tuple(fitted.messages)),
                fitted=fitted)
    turn.renewer = asyncio.get_running_loop().create_task(_renew(turn))
    return turn


async def _renew(turn: Turn) -> None:
    interval = max(1.0, settings.FAIRWAY_CONVERSATION_LOCK_SECONDS / 3)
    deadline = time.monotonic() + MAX_HOLD_SECONDS
    renew = functools.partial(dbthread.query, services.conversation_lock_renew)
    while time.monotonic() < deadline:
        await asyncio.sleep(interval)
        try:
            if not await renew(conversation_id=turn.conversation_id, lock_token=turn.lock_token):
                return
        except Exception:  # noqa: BLE001 — a failed renewal must not kill the generation
            logger.warning("conversation lock renewal failed: conversation=%s", turn.conversation_id, exc_info=True)


async def turn_finish(*, turn: Turn | None, outcome) -> None:
    """Store the turn (only what was delivered) and release the lock. Idempotent; never raises."""
    if turn is None or turn.finished:
        return
    turn.finished = True
    if turn.renewer is not None:
        turn.renewer.cancel()
    reply = outcome.text
    delivered = outcome.status == "ok" or bool(reply)
    messages = [*turn.new_messages, {"role": "assistant", "content": reply}] if delivered else []
    try:
        await dbthread.query(services.message_append, tenant_id=turn.tenant_id, conversation_id=turn.conversation_id,
                             messages=messages, lock_token=turn.lock_token, release=True)
    except Exception:  # noqa: BLE001 — the client has its reply; log ids only, never content
        logger.exception("could not store conversation turn: conversation=%s status=%s", turn.conversation_id,
                         outcome.status)
        try:
            await dbthread.query(services.conversation_unlock, conversation_id=turn.conversation_id,
                                 lock_token=turn.lock_token)
        except Exception:  # noqa: BLE001 — the lease expires on its own
            pass


def turn_stream(*, turn: Turn | None, run):
    """The client's SSE stream; with a turn, stores it once the stream ends (however it ends)."""
    stream = run.sse()
    if turn is None:
        return stream

    async def stream_then_store():
        try:
            async for chunk in stream:
                if chunk == DONE or chunk.startswith(FINAL_ERROR):
                    # Store (and unlock) before the client sees the end of the stream, so a client that
                    # sends its next turn as soon as this one ends never finds the conversation busy.
                    await turn_finish(turn=turn, outcome=run.outcome)
                yield chunk
        finally:
            await stream.aclose()  # settles run.outcome (ok / error / cancelled) first
            await turn_finish(turn=turn, outcome=run.outcome)

    return stream_then_store()

"""Limits on stored content, shared by the REST API and the chat completions hook."""

from __future__ import annotations

from django.conf import settings

from gateway.errors import invalid_request

MAX_TITLE_CHARS = 256
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_MESSAGES_PER_APPEND = 100
APPEND_ROLES = ("user", "assistant")


def content_problem(content, *, allow_empty: bool = False) -> tuple[str, str] | None:
    """What is wrong with a message body, as (message, code), or None. Never echoes the content."""
    if not isinstance(content, str):
        return "must be a string.", "invalid_type"
    if not allow_empty and not content.strip():
        return "must not be empty.", "empty_string"
    limit = settings.FAIRWAY_CONVERSATION_MAX_MESSAGE_CHARS
    if len(content) > limit:
        return f"is too long: at most {limit} characters per message.", "string_above_max_length"
    return None


def content_check(content, *, param: str, allow_empty: bool = False) -> str:
    problem = content_problem(content, allow_empty=allow_empty)
    if problem is not None:
        raise invalid_request(f"'{param}' {problem[0]}", param=param, code=problem[1])
    return content

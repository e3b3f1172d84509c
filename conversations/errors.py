"""Client-facing errors of the conversations API, in OpenAI's shape (gateway.errors.ApiError).

Messages name ids and limits only, never content: they end up in responses and logs.
"""

from __future__ import annotations

from uuid import UUID

from gateway.errors import ApiError, invalid_request


def not_found(conversation_id, *, param: str | None = None) -> ApiError:
    # The same answer for "never existed" and "another tenant's": no oracle for foreign ids.
    return ApiError(404, f"No conversation found with id '{conversation_id}'.", code="conversation_not_found",
                    param=param)


def busy(conversation_id) -> ApiError:
    return ApiError(409, f"Conversation '{conversation_id}' is busy with another request; retry when it "
                    "has finished.", code="conversation_busy", retry_after=1)


def bad_cursor() -> ApiError:
    return invalid_request("'after' must be the id of an item in this list.", param="after", code="invalid_cursor")


def undecryptable() -> ApiError:
    return ApiError(500, "Stored conversation data could not be decrypted.", code="decryption_failed",
                    type="server_error")


def parse_uuid(value, *, param: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        if not isinstance(value, str):
            raise ValueError
        return UUID(value)
    except ValueError:
        raise invalid_request(f"'{param}' must be a conversation id (a UUID).", param=param,
                              code="invalid_id") from None

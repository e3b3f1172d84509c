"""Input validation (DRF serializers) and output shapes for the conversations API.

Error messages never echo submitted content: they name the field and the limit only.
"""

from __future__ import annotations

from rest_framework import serializers

from . import rules
from .selectors import ConversationView, MessageView, Page


class StrictSerializer(serializers.Serializer):
    """Unknown fields are refused (a typo must not be silently ignored)."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["The request body must be a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["Unknown field."]})
        return super().to_internal_value(data)


class ContentField(serializers.Field):
    """A message body or system prompt: the shared size/emptiness rules (rules.content_check)."""

    def to_internal_value(self, data):
        problem = rules.content_problem(data)
        if problem is not None:
            raise serializers.ValidationError(problem[0][0].upper() + problem[0][1:], code=problem[1])
        return data

    def to_representation(self, value):
        return value


class MetadataField(serializers.Field):
    def to_internal_value(self, data):
        if not isinstance(data, dict) or len(data) > rules.MAX_METADATA_KEYS:
            raise serializers.ValidationError(f"Must be an object with at most {rules.MAX_METADATA_KEYS} keys.")
        for key, value in data.items():
            if len(key) > rules.MAX_METADATA_KEY_CHARS or not isinstance(value, str) \
                    or len(value) > rules.MAX_METADATA_VALUE_CHARS:
                raise serializers.ValidationError(
                    f"Keys must be strings of at most {rules.MAX_METADATA_KEY_CHARS} characters and values "
                    f"strings of at most {rules.MAX_METADATA_VALUE_CHARS}.")
        return dict(data)

    def to_representation(self, value):
        return value


class ConversationWriteSerializer(StrictSerializer):
    """POST (create) and PATCH (only the given fields change; null clears title/system_prompt)."""

    title = serializers.CharField(max_length=rules.MAX_TITLE_CHARS, allow_null=True, allow_blank=True,
                                  required=False, trim_whitespace=False)
    metadata = MetadataField(required=False, allow_null=True)
    system_prompt = ContentField(required=False, allow_null=True)


class MessageInputSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=rules.APPEND_ROLES, error_messages={
        "invalid_choice": f"Must be one of {', '.join(rules.APPEND_ROLES)} (the system prompt is set on the "
                          "conversation)."})
    content = ContentField()


class MessagesAppendSerializer(StrictSerializer):
    messages = serializers.ListField(child=MessageInputSerializer(), min_length=1,
                                     max_length=rules.MAX_MESSAGES_PER_APPEND)


class ListQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=20)
    after = serializers.UUIDField(required=False)
    order = serializers.ChoiceField(choices=("asc", "desc"), default="asc", error_messages={
        "invalid_choice": "Must be 'asc' or 'desc'."})


def validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# --- output -------------------------------------------------------------------------------------

def _ts(value) -> int:
    return int(value.timestamp())


def conversation_json(view: ConversationView) -> dict:
    return {"id": str(view.id), "object": "conversation", "created_at": _ts(view.created_at),
            "updated_at": _ts(view.updated_at), "title": view.title, "metadata": view.metadata,
            "system_prompt": view.system_prompt, "message_count": view.message_count}


def message_json(view: MessageView) -> dict:
    return {"id": str(view.id), "object": "conversation.message", "conversation_id": str(view.conversation_id),
            "role": view.role, "content": view.content, "created_at": _ts(view.created_at)}


def page_json(page: Page, render) -> dict:
    data = [render(item) for item in page.items]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": page.has_more}

"""REST API for conversations (DRF, API-key auth, scope `conversations`). Thin: parse → service → JSON.

Every object lookup is scoped to the caller's tenant in the selectors/services, so another tenant's
id answers 404 for every verb, exactly like an id that never existed.
"""

from __future__ import annotations

from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.authentication import HasScope
from tenants.models import SCOPE_CONVERSATIONS

from . import crypto, errors, selectors, services
from . import serializers as s


class ConversationsApiView(APIView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scope = SCOPE_CONVERSATIONS

    def handle_exception(self, exc):
        if isinstance(exc, crypto.DecryptionError):  # never a traceback with row details to the client
            exc = errors.undecryptable()
        return super().handle_exception(exc)

    @property
    def tenant_id(self):
        return self.request.user.tenant_id


class ConversationListView(ConversationsApiView):
    def get(self, request):
        query = s.validated(s.ListQuerySerializer, request.query_params.dict())
        page = selectors.conversation_list(tenant_id=self.tenant_id, limit=query["limit"], after=query.get("after"))
        return Response(s.page_json(page, s.conversation_json))

    def post(self, request):
        data = s.validated(s.ConversationWriteSerializer, request.data)
        view = services.conversation_create(tenant_id=self.tenant_id, **data)
        return Response(s.conversation_json(view), status=201)


class ConversationDetailView(ConversationsApiView):
    def get(self, request, conversation_id: str):
        cid = errors.parse_uuid(conversation_id, param="conversation_id")
        return Response(s.conversation_json(selectors.conversation_get(tenant_id=self.tenant_id,
                                                                       conversation_id=cid)))

    def patch(self, request, conversation_id: str):
        cid = errors.parse_uuid(conversation_id, param="conversation_id")
        data = s.validated(s.ConversationWriteSerializer, request.data)
        view = services.conversation_update(tenant_id=self.tenant_id, conversation_id=cid, **data)
        return Response(s.conversation_json(view))

    def delete(self, request, conversation_id: str):
        cid = errors.parse_uuid(conversation_id, param="conversation_id")
        services.conversation_delete(tenant_id=self.tenant_id, conversation_id=cid)
        return Response({"id": str(cid), "object": "conversation.deleted", "deleted": True})


class MessageListView(ConversationsApiView):
    def get(self, request, conversation_id: str):
        cid = errors.parse_uuid(conversation_id, param="conversation_id")
        query = s.validated(s.ListQuerySerializer, request.query_params.dict())
        page = selectors.message_list(tenant_id=self.tenant_id, conversation_id=cid, **query)
        return Response(s.page_json(page, s.message_json))

    def post(self, request, conversation_id: str):
        """Append without generating: one {"role", "content"} or {"messages": [...]} (up to 100)."""
        cid = errors.parse_uuid(conversation_id, param="conversation_id")
        single = isinstance(request.data, dict) and "messages" not in request.data
        if single:
            messages = [s.validated(s.MessageInputSerializer, request.data)]
        else:
            messages = s.validated(s.MessagesAppendSerializer, request.data)["messages"]
        created = services.message_append(tenant_id=self.tenant_id, conversation_id=cid, messages=messages)
        if single:
            return Response(s.message_json(created[0]), status=201)
        return Response({"object": "list", "data": [s.message_json(view) for view in created]}, status=201)

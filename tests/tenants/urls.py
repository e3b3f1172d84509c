"""Test-only URLconf: small views that exercise tenants.authentication the way the gateway will."""

from django.contrib import admin
from django.urls import path
from django.http import JsonResponse
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway.errors import ApiError, error_response
from tenants.authentication import HasScope, aauthenticate_request, authenticate_request


def _principal_json(principal) -> dict:
    return {"api_key_id": str(principal.api_key_id), "key_id": principal.key_id,
            "tenant_id": str(principal.tenant_id), "tenant_slug": principal.tenant_slug,
            "scopes": sorted(principal.scopes), "rpm": principal.plan.rpm, "weight": principal.plan.weight}


class WhoAmI(APIView):  # default classes from settings: ApiKeyAuthentication + IsAuthenticated
    def get(self, request):
        return Response(_principal_json(request.user))


class UsageOnly(APIView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scope = "usage"

    def get(self, request):
        return Response({"ok": True})


class Open(APIView):
    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"user": None if request.user is None else request.user.tenant_slug})


def plain_view(request):
    try:
        return JsonResponse(_principal_json(authenticate_request(request)))
    except ApiError as error:
        return error_response(error)


async def async_view(request):
    try:
        return JsonResponse(_principal_json(await aauthenticate_request(request)))
    except ApiError as error:
        return error_response(error)


urlpatterns = [
    path("whoami", WhoAmI.as_view()),
    path("usage", UsageOnly.as_view()),
    path("open", Open.as_view()),
    path("plain", plain_view),
    path("async", async_view),
    path("admin/", admin.site.urls),
]

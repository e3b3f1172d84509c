from django.contrib import admin
from django.urls import include, path

from gateway.health import health, ready

urlpatterns = [
    path("v1/", include("conversations.urls")),
    path("v1/", include("gateway.urls")),
    path("admin/", admin.site.urls),
    path("dashboard/", include("dashboard.urls")),
    path("health", health),
    path("ready", ready),
]

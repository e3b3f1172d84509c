from django.urls import path

from . import usage, views

urlpatterns = [
    path("models", views.list_models),
    path("models/<path:model_id>", views.retrieve_model),
    path("chat/completions", views.chat_completions),
    path("completions", views.completions),
    path("usage", usage.usage),  # /v1/usage (quotas & billing)
]
